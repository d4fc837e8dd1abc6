// `pactum demo` embeds data/microsoft-openai (include_dir): rebuild when those files change.
fn main() {
    println!("cargo:rerun-if-changed=data/microsoft-openai");
}
