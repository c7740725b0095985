fn main() { println!("lume"); }
