//! The `cargo xtask` binary; the tasks are in the library.

fn main() -> std::process::ExitCode {
    xtask::main()
}
