//! The `mtosi` command: parse arguments, call the library, print errors without a backtrace.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(err) = cli::run(args) {
        let message = err.to_string();
        eprintln!("error: {message}");
        // Module errors often display their cause too; print only causes not already shown.
        let mut shown = message;
        for cause in err.chain().skip(1) {
            let cause = cause.to_string();
            if !shown.contains(&cause) {
                eprintln!("  caused by: {cause}");
                shown.push_str(&cause);
            }
        }
        std::process::exit(1);
    }
}
