//! `other-world`: a plain WASI command, not a job. elihu must refuse it.
fn main() {
    println!("I am a command, not an elihu job");
}
