fn main() -> anyhow::Result<()> {
    shop::run::main()
}
