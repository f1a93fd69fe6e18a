//! The house rules of the layout: the crate graph, checked from `cargo
//! metadata`, and the arrows inside each domain crate, checked from its
//! sources.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use syn::visit::{self, Visit};

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata JSON")
}

/// The workspace's package `name`.
fn package<'a>(metadata: &'a Value, name: &str) -> &'a Value {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in the workspace"))
}

/// The workspace's domain crates: every package named `domain-*`.
fn domain_crates(metadata: &Value) -> Vec<&Value> {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("domain-"))
        .collect()
}

#[test]
fn no_domain_crate_depends_on_another() {
    let metadata = metadata();
    let domains = domain_crates(&metadata);
    assert!(!domains.is_empty(), "no domain-* crate in the workspace");
    for package in domains {
        let name = package["name"].as_str().unwrap();
        for dependency in package["dependencies"].as_array().unwrap() {
            let dep = dependency["name"].as_str().unwrap();
            assert!(
                !dep.starts_with("domain-"),
                "{name} depends on {dep}: contexts talk only through shared-kernel ports and events"
            );
            assert_ne!(dep, "shop", "{name} depends on the app");
        }
    }
}

#[test]
fn the_shared_kernel_depends_on_no_context() {
    let metadata = metadata();
    let kernel = package(&metadata, "shared-kernel");
    for dependency in kernel["dependencies"].as_array().unwrap() {
        let dep = dependency["name"].as_str().unwrap();
        assert!(
            !dep.starts_with("domain-") && dep != "shop",
            "shared-kernel depends on {dep}"
        );
    }
}

// The arrows inside a domain crate (DESIGN.md section 9): model (pure) <-
// service (use cases) <- http, repository, event handlers, port
// implementations. Each source file gets a role ([`Role`]), from its name or
// from what it implements; each path it names inside the crate (`use
// crate::...`, `crate::...` in code, `super::...` that leaves the file, `use
// child::...`), test modules included, is followed through `pub use`
// re-exports to the file that defines it, and [`Role::forbids`] says which
// roles may not point at which:
// - the model imports only the model;
// - errors import no adapter (HTTP, handler, port implementation), no use
//   case and no repository: the HTTP adapter passes what they need (the
//   order context's field spelling);
// - routes, event handlers and port implementations never reach the
//   repository or the schema: they call use cases;
// - the repository calls no use case and no adapter; use cases know no
//   route and no handler; handlers and ports speak no HTTP and do not call
//   each other;
// - only the wiring imports the wiring (`context.rs`, or what `lib.rs`
//   defines rather than re-exports).
// Other files (the product cache and its change feed, the providers'
// protocols and settings, signatures) are helpers, free of these rules.

/// What a file of a domain crate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `lib.rs` and `context.rs`: the crate's module map and the context as
    /// it describes itself to the app; they wire everything.
    Wiring,
    /// `model.rs`, `model/`: the pure rules.
    Model,
    /// `error.rs`: what can go wrong in the use cases.
    Error,
    /// `service.rs`, `service/`: the use cases.
    Service,
    /// `schema.rs`, `repository.rs`, `*_repository.rs`, `repository/`: the
    /// persistence adapter.
    Storage,
    /// `http.rs`, `internal_http.rs`, `notify.rs`: the HTTP adapters
    /// (a provider's notification route is one).
    Http,
    /// `events.rs`, or a file implementing the outbox's `EventHandler`.
    Handler,
    /// A file implementing one of the shared kernel's port traits.
    Port,
    /// Anything else: helpers and outbound adapters (the product cache, a
    /// provider's protocol and settings, signatures).
    Support,
}

impl Role {
    fn of(module: &[String], file: &syn::File, ports: &BTreeSet<String>) -> Role {
        let first = module.first().map(String::as_str);
        let last = module.last().map_or("lib", String::as_str);
        let implements = implemented_traits(file);
        if module.is_empty() || last == "context" {
            Role::Wiring
        } else if first == Some("model") {
            Role::Model
        } else if last == "error" {
            Role::Error
        } else if first == Some("service") {
            Role::Service
        } else if last == "schema"
            || module
                .iter()
                .any(|m| m == "repository" || m.ends_with("_repository"))
        {
            Role::Storage
        } else if matches!(last, "http" | "internal_http" | "notify") {
            Role::Http
        } else if last == "events" || implements.contains("EventHandler") {
            Role::Handler
        } else if implements.iter().any(|t| ports.contains(t)) {
            Role::Port
        } else {
            Role::Support
        }
    }

    /// Why `self` may not import `to`, if it may not.
    fn forbids(self, to: Role) -> Option<&'static str> {
        use Role::*;
        match (self, to) {
            (Wiring, _) => None,
            (_, Wiring) => Some("only the app reads the context's wiring"),
            (Model, Model) => None,
            (Model, _) => Some("the model is pure: it imports nothing of the crate but the model"),
            (Error, Http | Handler | Port | Service | Storage) => Some(
                "errors never import adapters or use cases (the HTTP adapter gives what it needs)",
            ),
            (Service, Http | Handler) => {
                Some("use cases know nothing of the adapters that call them")
            }
            (Storage, Service | Http | Handler | Port) => {
                Some("the repository is called by the use cases, never the other way")
            }
            (Http | Handler | Port, Storage) => Some(
                "handlers, routes and port implementations call use cases, never the repository or the schema",
            ),
            (Handler | Port, Http) => Some("only the HTTP adapters speak HTTP"),
            (Http, Handler) => Some("a route calls use cases, not event handlers"),
            (Handler, Port) => Some("an event handler calls use cases, not port implementations"),
            (Port, Handler) => Some("a port implementation calls use cases, not event handlers"),
            _ => None,
        }
    }
}

/// The traits a file implements, by their last path segment (its own
/// modules' implementations, such as test fakes, left out).
fn implemented_traits(file: &syn::File) -> BTreeSet<String> {
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Impl(imp) => imp.trait_.as_ref(),
            _ => None,
        })
        .filter_map(|(_, path, _)| path.segments.last())
        .map(|segment| segment.ident.to_string())
        .collect()
}

/// A path a file names.
#[derive(Debug, Clone)]
struct Named {
    /// The module it is named in: the file's, or an inline module's inside it.
    module: Vec<String>,
    /// As written (`crate::service::Reservations`, `super::http`).
    path: Vec<String>,
    /// For a `use`, the name it brings in (`*` for a glob); else empty.
    name: String,
    /// A `pub use`: a re-export.
    reexport: bool,
}

/// Every path a file names.
struct Paths {
    module: Vec<String>,
    found: Vec<Named>,
}

impl Paths {
    fn use_tree(&mut self, tree: &syn::UseTree, mut prefix: Vec<String>, reexport: bool) {
        let mut push = |path: Vec<String>, name: String| {
            self.found.push(Named {
                module: self.module.clone(),
                path,
                name,
                reexport,
            });
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, reexport);
            }
            syn::UseTree::Name(n) if n.ident == "self" => {
                let name = prefix.last().cloned().unwrap_or_default();
                push(prefix, name);
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                push(prefix, n.ident.to_string());
            }
            syn::UseTree::Rename(r) => {
                if r.ident != "self" {
                    prefix.push(r.ident.to_string());
                }
                push(prefix, r.rename.to_string());
            }
            syn::UseTree::Glob(_) => push(prefix, "*".into()),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(tree, prefix.clone(), reexport);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let reexport = !matches!(item.vis, syn::Visibility::Inherited);
        self.use_tree(&item.tree, Vec::new(), reexport);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if path.leading_colon.is_none()
            && matches!(
                segments.first().map(String::as_str),
                Some("crate" | "super" | "self")
            )
        {
            self.found.push(Named {
                module: self.module.clone(),
                path: segments,
                name: String::new(),
                reexport: false,
            });
        }
        visit::visit_path(self, path);
    }

    // `pub(crate)` and `pub(in crate::x)` name no dependency.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// One source file of a domain crate.
struct Source {
    /// Its path under `src/`.
    path: String,
    module: Vec<String>,
    role: Role,
    names: Vec<Named>,
}

/// An import that breaks an arrow.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BrokenArrow {
    file: String,
    import: String,
    target: String,
    message: String,
}

impl fmt::Display for BrokenArrow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imports `{}` ({}): {}",
            self.file, self.import, self.target, self.message
        )
    }
}

/// The module a source file is: `service/mod.rs` is `service`,
/// `service/catalog.rs` is `service::catalog`, `lib.rs` the crate root.
fn module_of(path: &str) -> Vec<String> {
    let mut module: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    module
}

/// A path as written in `module`, made absolute (without `crate`); `None`
/// when it leaves the crate.
fn absolute(
    modules: &BTreeMap<Vec<String>, usize>,
    module: &[String],
    written: &[String],
) -> Option<Vec<String>> {
    let mut segments = written.iter().peekable();
    let mut base = match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("self") => {
            segments.next();
            module.to_vec()
        }
        Some("super") => {
            let mut base = module.to_vec();
            while segments.peek().is_some_and(|s| *s == "super") {
                segments.next();
                base.pop();
            }
            base
        }
        // A child module of this one (`use invalidator::Invalidator;`).
        Some(first) => {
            let mut child = module.to_vec();
            child.push(first.to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
            module.to_vec()
        }
        None => return None,
    };
    base.extend(segments.cloned());
    Some(base)
}

/// The file that defines `path` (absolute): the deepest module it names,
/// followed through `pub use` re-exports.
fn defining_file(
    modules: &BTreeMap<Vec<String>, usize>,
    reexports: &HashMap<(Vec<String>, String), Vec<String>>,
    path: &[String],
) -> usize {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let depth = (0..=path.len())
            .rev()
            .find(|n| modules.contains_key(&path[..*n]))
            .unwrap_or(0);
        let module = path[..depth].to_vec();
        let Some(next) = path
            .get(depth)
            .and_then(|name| reexports.get(&(module.clone(), name.clone())))
        else {
            return modules[&module];
        };
        let mut next = next.clone();
        next.extend(path[depth + 1..].iter().cloned());
        path = next;
    }
    panic!("re-exports that go round in circles: {}", path.join("::"))
}

/// The imports of a domain crate's sources (path under `src/`, text) that
/// break an arrow. `ports` are the shared kernel's port traits.
fn broken_arrows(
    sources: &[(String, String)],
    ports: &BTreeSet<String>,
) -> (Vec<BrokenArrow>, Vec<Role>) {
    let files: Vec<Source> = sources
        .iter()
        .map(|(path, text)| {
            let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{path}: {e}"));
            let module = module_of(path);
            let mut paths = Paths {
                module: module.clone(),
                found: Vec::new(),
            };
            paths.visit_file(&file);
            Source {
                path: path.clone(),
                role: Role::of(&module, &file, ports),
                module,
                names: paths.found,
            }
        })
        .collect();
    let modules: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    assert!(modules.contains_key(&Vec::new()), "no lib.rs");
    let mut reexports = HashMap::new();
    for file in &files {
        for named in file.names.iter().filter(|n| n.reexport && n.name != "*") {
            if let Some(path) = absolute(&modules, &named.module, &named.path) {
                reexports.insert((named.module.clone(), named.name.clone()), path);
            }
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        for named in &file.names {
            let Some(path) = absolute(&modules, &named.module, &named.path) else {
                continue;
            };
            let target = &files[defining_file(&modules, &reexports, &path)];
            if target.path == file.path {
                continue;
            }
            if let Some(message) = file.role.forbids(target.role) {
                broken.push(BrokenArrow {
                    file: format!("{} ({:?})", file.path, file.role),
                    import: named.path.join("::"),
                    target: format!("{}, {:?}", target.path, target.role),
                    message: message.to_owned(),
                });
            }
        }
    }
    broken.sort();
    broken.dedup();
    (broken, files.iter().map(|f| f.role).collect())
}

/// Every `.rs` file under `dir`, by its path relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn source_dir(package: &Value) -> PathBuf {
    Path::new(package["manifest_path"].as_str().unwrap())
        .parent()
        .unwrap()
        .join("src")
}

/// The shared kernel's port traits (`shared_kernel::model::ports`).
fn port_traits(metadata: &Value) -> BTreeSet<String> {
    let path = source_dir(package(metadata, "shared-kernel")).join("model/ports.rs");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the kernel's ports ({}): {e}", path.display()));
    let ports: BTreeSet<String> = syn::parse_file(&text)
        .unwrap()
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Trait(t) => Some(t.ident.to_string()),
            _ => None,
        })
        .collect();
    assert!(!ports.is_empty(), "no trait in {}", path.display());
    ports
}

#[test]
fn inside_each_domain_crate_the_arrows_point_at_the_use_cases() {
    let metadata = metadata();
    let ports = port_traits(&metadata);
    let domains = domain_crates(&metadata);
    assert!(!domains.is_empty(), "no domain-* crate in the workspace");
    let mut broken = Vec::new();
    for package in domains {
        let name = package["name"].as_str().unwrap();
        let src = source_dir(package);
        let mut sources = Vec::new();
        rust_files(&src, &src, &mut sources);
        let (found, roles) = broken_arrows(&sources, &ports);
        for role in [Role::Model, Role::Service] {
            assert!(roles.contains(&role), "{name} has no {role:?} file");
        }
        broken.extend(found.iter().map(|b| format!("{name}/src/{b}")));
    }
    assert!(
        broken.is_empty(),
        "imports against the in-crate arrows (model <- service <- adapters):\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_arrow_check_catches_what_it_forbids() {
    let crate_ = [
        ("lib.rs", "mod model; pub use service::OrderService;"),
        ("model.rs", "use crate::OrderService;"),
        (
            "service.rs",
            "use crate::repository; pub struct OrderService;",
        ),
        (
            "repository.rs",
            "use crate::schema::orders; use crate::model::Order;",
        ),
        ("schema.rs", ""),
        (
            "lookup.rs",
            "use shared_kernel::model::ports::OrderLookup; struct D; impl OrderLookup for D {} \
             fn f() { crate::repository::find(); }",
        ),
        (
            "error.rs",
            "pub fn problem() { super::http::rest_field(); }",
        ),
        (
            "http.rs",
            "use crate::service::OrderService; pub fn rest_field() {} \
             #[cfg(test)] mod tests { use super::*; }",
        ),
        (
            "events.rs",
            "mod inner { use super::super::schema::orders; }",
        ),
        ("cache/mod.rs", "mod feed; pub(crate) use feed::Feed;"),
        (
            "cache/feed.rs",
            "use crate::schema::changes; pub struct Feed;",
        ),
    ];
    let sources: Vec<(String, String)> = crate_
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    let ports = BTreeSet::from(["OrderLookup".to_owned()]);
    let (broken, _) = broken_arrows(&sources, &ports);
    let found: Vec<(&str, &str)> = broken
        .iter()
        .map(|b| (b.file.as_str(), b.import.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("error.rs (Error)", "super::http::rest_field"),
            ("events.rs (Handler)", "super::super::schema::orders"),
            ("lookup.rs (Port)", "crate::repository::find"),
            ("model.rs (Model)", "crate::OrderService"),
        ],
        "{broken:#?}"
    );
}

/// Crates of shop's own whose names a fake provider must never use.
const SHOP_CRATES: &[&str] = &[
    "domain_payment",
    "domain_order",
    "domain_product",
    "shared_kernel",
    "shop",
];

/// The paths in a file that start at one of `crates` (`use`s, paths in code,
/// and `name::` inside macros); doc comments aside.
fn names_of(crates: &[&str], text: &str) -> Vec<String> {
    struct Names<'a> {
        crates: &'a [&'a str],
        in_macros: regex::Regex,
        found: Vec<String>,
    }
    impl<'ast> Visit<'ast> for Names<'_> {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            if let Some(first) = path.segments.first()
                && (path.segments.len() > 1 || path.leading_colon.is_some())
                && self.crates.iter().any(|c| first.ident == c)
            {
                let segments: Vec<String> =
                    path.segments.iter().map(|s| s.ident.to_string()).collect();
                self.found.push(segments.join("::"));
            }
            visit::visit_path(self, path);
        }
        fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
            let root = match &item.tree {
                syn::UseTree::Path(p) => Some(&p.ident),
                syn::UseTree::Name(n) => Some(&n.ident),
                syn::UseTree::Rename(r) => Some(&r.ident),
                _ => None,
            };
            if let Some(root) = root
                && self.crates.iter().any(|c| root == c)
            {
                self.found.push(format!("use {root}::.."));
            }
        }
        fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
            if self.crates.iter().any(|c| item.ident == c) {
                self.found.push(format!("extern crate {}", item.ident));
            }
        }
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            let tokens = mac.tokens.to_string();
            for found in self.in_macros.find_iter(&tokens) {
                self.found.push(format!("{} (in a macro)", found.as_str()));
            }
            visit::visit_macro(self, mac);
        }
        // Doc comments may name shop's code they stand apart from.
        fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
    }
    let alternatives = crates.join("|");
    let mut names = Names {
        crates,
        in_macros: regex::Regex::new(&format!(r"\b({alternatives})\s*::")).unwrap(),
        found: Vec::new(),
    };
    names.visit_file(&syn::parse_file(text).unwrap());
    names.found
}

/// Issue 24 item 12: the fake providers are the providers' side, written
/// from their documentation; were they to sign, verify, encode or parse with
/// shop's code, the end-to-end tests would check shop against itself. No
/// file under `tests/src/fakes/` names a crate of shop's, and the provider
/// tests build the providers' messages with the fakes, not `domain_payment`.
#[test]
fn the_fake_providers_share_no_code_with_shop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut fakes = Vec::new();
    rust_files(root, &root.join("src/fakes"), &mut fakes);
    assert!(fakes.len() >= 2, "no fakes found: {fakes:?}");
    let mut found = Vec::new();
    for (path, text) in &fakes {
        found.extend(
            names_of(SHOP_CRATES, text)
                .into_iter()
                .map(|n| format!("{path}: {n}")),
        );
    }
    for path in ["api/alipay.rs", "api/wechat_pay.rs"] {
        let text = std::fs::read_to_string(root.join(path)).unwrap();
        found.extend(
            names_of(&["domain_payment"], &text)
                .into_iter()
                .map(|n| format!("{path}: {n}")),
        );
    }
    assert!(
        found.is_empty(),
        "the fake providers use shop's code:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_shared_code_check_catches_what_it_forbids() {
    let text = r#"
        //! Unlike `domain_payment::providers`, this is the provider's side.
        use domain_payment::providers::alipay;
        use shop as app;
        use shared_kernel::{self};
        fn f() {
            let shop = 1;
            let _ = shop + 1;
            let _ = ::domain_order::X;
            let _ = format!("{}", domain_product::name());
            let _ = format!("the shop answers");
            let _: shared_kernel::Money;
        }
    "#;
    assert_eq!(
        names_of(SHOP_CRATES, text),
        [
            "use domain_payment::..",
            "use shop::..",
            "use shared_kernel::..",
            "domain_order::X",
            "domain_product :: (in a macro)",
            "shared_kernel::Money",
        ]
    );
}
