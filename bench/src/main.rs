fn main() {
    eprintln!("natrix-bench: not yet implemented");
    std::process::exit(2);
}
