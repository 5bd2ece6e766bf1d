//! The `uerzoo` command line: a thin layer over the library (see `src/cli/`).

mod cli;

#[global_allocator]
static ALLOCATOR: uerzoo::alloc::Allocator = uerzoo::alloc::Allocator;

fn main() -> std::process::ExitCode {
    uerzoo::alloc::configure();
    cli::main()
}
