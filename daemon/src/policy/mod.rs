//! Policy directories: parse, validate, compile.
