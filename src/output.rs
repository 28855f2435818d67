//! A command's output on stdout. Rust ignores SIGPIPE, so `println!` panics when the reader
//! goes away (`switchboard plugin test ... | head`); here that ends the output, not the
//! command, which still exits with its own status.

use std::io::{ErrorKind, Write};

/// Writes `args` to stdout; a closed pipe is not an error, anything else is said on stderr.
pub fn write(args: std::fmt::Arguments<'_>) {
    if let Err(e) = std::io::stdout().lock().write_fmt(args)
        && e.kind() != ErrorKind::BrokenPipe
    {
        eprintln!("switchboard: cannot write the output: {e}");
    }
}

/// `println!` through [`write`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}
