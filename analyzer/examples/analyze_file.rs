//! Prints the summary of a contract module: `cargo run --release -p chroma-analyzer --example analyze_file -- FILE.wasm`.
fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: analyze_file FILE.wasm");
        std::process::exit(2);
    };
    let wasm = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    match chroma_analyzer::analyze(&wasm) {
        Ok(summary) => {
            println!("{path}: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
            let names = chroma_analyzer::ArgNames::default();
            for e in &summary.entries {
                println!("{} ({} steps)", e.name, e.steps);
                for k in &e.reads {
                    println!("  read {}", chroma_analyzer::describe_key(k, &e.reads, &names, 0));
                }
                for k in &e.writes {
                    println!("  write {}", chroma_analyzer::describe_key(k, &e.reads, &names, 0));
                }
                for k in &e.adds {
                    println!("  add {}", chroma_analyzer::describe_key(k, &e.reads, &names, 0));
                }
                for c in &e.calls {
                    println!("  call {}", chroma_analyzer::describe_call(c, &e.reads, &names));
                }
            }
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
