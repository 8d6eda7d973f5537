//! Scans the paths given on the command line and prints the text report and the throughput.
//!
//! `cargo run --release -p nnguard-modelfile --example scan_file -- model.pt`

#![allow(clippy::print_stdout)]

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let start = std::time::Instant::now();
    let report = nnguard_modelfile::scan_paths(&paths);
    let secs = start.elapsed().as_secs_f64();
    let bytes: u64 = report.files.iter().map(|f| f.bytes).sum();
    print!("{}", nnguard_modelfile::report::to_text(&report, true));
    println!(
        "{bytes} bytes in {secs:.3} s: {:.0} MB/s",
        bytes as f64 / 1e6 / secs.max(1e-9)
    );
}
