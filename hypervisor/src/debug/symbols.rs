//! Formats code addresses for dumps as `0x%016x <name+0xoff>`, using the
//! symbol table embedded in the image when there is one.

use core::fmt;

use symtab::SymbolTable;

/// An address ready to print; see [`describe`] and [`describe_return`].
#[derive(Clone, Copy, Debug)]
pub struct Described<'a> {
    addr: u64,
    symbol: Option<(&'a str, u64)>,
}

/// Describes a PC: the address itself is looked up.
pub fn describe<'a>(table: Option<&SymbolTable<'a>>, addr: u64) -> Described<'a> {
    describe_at(table, addr, addr)
}

/// Describes a return address. The call instruction is 4 bytes before it, and
/// a call that ends a function (to a `noreturn` callee) returns to the next
/// symbol's first instruction, so the symbol is looked up at `addr - 4`; the
/// printed address and offset are still those of `addr`, as a debugger shows.
pub fn describe_return<'a>(table: Option<&SymbolTable<'a>>, addr: u64) -> Described<'a> {
    match addr.checked_sub(4) {
        Some(call) => describe_at(table, addr, call),
        None => Described { addr, symbol: None },
    }
}

fn describe_at<'a>(table: Option<&SymbolTable<'a>>, addr: u64, lookup: u64) -> Described<'a> {
    let symbol = table
        .and_then(|t| t.lookup(lookup))
        .map(|found| (found.name, addr - found.start));
    Described { addr, symbol }
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.addr)?;
        if let Some((name, offset)) = self.symbol {
            write!(f, " <{name}+{offset:#x}>")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use symtab::{encode, Symbol};

    fn blob() -> Vec<u8> {
        let sym = |start, size, name: &str| Symbol {
            start,
            size,
            name: name.to_string(),
        };
        encode(&[
            sym(0x4020_0000, 0x20, "first"),
            sym(0x4020_0020, 0x10, "second"),
        ])
    }

    #[test]
    fn pc_inside_a_symbol() {
        let blob = blob();
        let table = SymbolTable::parse(&blob).unwrap();
        let text = describe(Some(&table), 0x4020_0008).to_string();
        assert_eq!(text, "0x0000000040200008 <first+0x8>");
        assert_eq!(
            describe(Some(&table), 0x4020_0020).to_string(),
            "0x0000000040200020 <second+0x0>"
        );
    }

    #[test]
    fn return_address_uses_the_call_site() {
        let blob = blob();
        let table = SymbolTable::parse(&blob).unwrap();
        // The call was the last instruction of `first`.
        let text = describe_return(Some(&table), 0x4020_0020).to_string();
        assert_eq!(text, "0x0000000040200020 <first+0x20>");
        let text = describe_return(Some(&table), 0x4020_0028).to_string();
        assert_eq!(text, "0x0000000040200028 <second+0x8>");
    }

    #[test]
    fn bare_address_without_symbol() {
        let blob = blob();
        let table = SymbolTable::parse(&blob).unwrap();
        assert_eq!(
            describe(Some(&table), 0x1234).to_string(),
            "0x0000000000001234"
        );
        assert_eq!(
            describe(None, 0x4020_0008).to_string(),
            "0x0000000040200008"
        );
        assert_eq!(
            describe_return(Some(&table), 2).to_string(),
            "0x0000000000000002"
        );
    }
}
