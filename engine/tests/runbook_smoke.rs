#[test]
fn smoke() {
    for f in ["/tmp/rb/good.yaml", "/tmp/rb/bad.yaml"] {
        let text = std::fs::read_to_string(f).unwrap();
        match fogbook_engine::runbook::parse(&text, f) {
            Ok(rb) => println!("OK {rb:#?}"),
            Err(d) => println!("{d}"),
        }
    }
}
