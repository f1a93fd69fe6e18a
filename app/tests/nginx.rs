#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

//! `deploy/nginx/shop-split.conf` routes every public path to the service
//! that serves it, and the internal API to none. The file uses exact (`=`)
//! and prefix (`^~`, or none) locations only, for which nginx's choice is: an
//! exact match, else the longest matching prefix; this test reads the file's
//! locations and chooses as nginx does. (A regex location would make it
//! refuse the file, rather than guess.)

use shop::api::openapi_for;
use shop::contexts::Contexts;

const CONFIG: &str = include_str!("../../deploy/nginx/shop-split.conf");

/// Where a location sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Upstream(String),
    Answer(u16),
    Other,
}

#[derive(Debug)]
struct Location {
    exact: bool,
    path: String,
    target: Target,
}

/// The `location` blocks of the config, in order.
fn locations() -> Vec<Location> {
    let mut found = Vec::new();
    let mut rest = CONFIG;
    while let Some(at) = rest.find("location ") {
        // Skip comments: a location keyword after a `#` on its line is prose.
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let is_comment = rest[line_start..at].contains('#');
        rest = &rest[at + "location ".len()..];
        if is_comment {
            continue;
        }
        let open = rest.find('{').expect("a location has a block");
        let head: Vec<&str> = rest[..open].split_whitespace().collect();
        let (exact, path) = match head.as_slice() {
            ["=", path] => (true, *path),
            ["^~", path] | [path] => (false, *path),
            other => panic!("a location form this test does not model: {other:?}"),
        };
        let close = rest[open..].find('}').expect("closed") + open;
        let body = &rest[open + 1..close];
        let target = if let Some(upstream) = body
            .split("proxy_pass http://")
            .nth(1)
            .and_then(|s| s.split([';', '/']).next())
        {
            Target::Upstream(upstream.trim().to_owned())
        } else if let Some(status) = body
            .split("return ")
            .nth(1)
            .and_then(|s| s.split([' ', ';']).next())
        {
            Target::Answer(status.parse().expect("a status"))
        } else {
            Target::Other
        };
        found.push(Location {
            exact,
            path: path.to_owned(),
            target,
        });
        rest = &rest[close..];
    }
    found
}

/// Where nginx sends `path`.
fn route(locations: &[Location], path: &str) -> Target {
    if let Some(exact) = locations.iter().find(|l| l.exact && l.path == path) {
        return exact.target.clone();
    }
    locations
        .iter()
        .filter(|l| !l.exact && path.starts_with(&l.path))
        .max_by_key(|l| l.path.len())
        .map(|l| l.target.clone())
        .expect("a catch-all location")
}

/// The paths of a context's document, with sample values for their parameters.
fn paths_of(context: &str) -> Vec<String> {
    let document = openapi_for(Contexts::of(&[context]).unwrap());
    document
        .paths
        .paths
        .keys()
        .map(|path| {
            path.split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        "01a21a60-79fb-7725-877b-4612200d19ee"
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

#[test]
fn every_public_path_reaches_the_service_that_serves_it() {
    let locations = locations();
    assert!(locations.len() >= 10, "{locations:?}");
    let everywhere: Vec<String> = paths_of("product")
        .into_iter()
        .filter(|path| paths_of("order").contains(path) && paths_of("payment").contains(path))
        .collect();
    assert!(
        everywhere.iter().any(|p| p == "/metrics"),
        "health and metrics are every service's: {everywhere:?}"
    );
    for (context, upstream) in [
        ("product", "shop_product"),
        ("order", "shop_order"),
        ("payment", "shop_payment"),
    ] {
        let own: Vec<String> = paths_of(context)
            .into_iter()
            .filter(|path| !everywhere.contains(path))
            .collect();
        assert!(own.len() >= 3, "{context:?}: {own:?}");
        for path in own {
            assert_eq!(
                route(&locations, &path),
                Target::Upstream(upstream.to_owned()),
                "{path} is served by the {context:?} service"
            );
        }
    }
    // Served by the payment service, outside the document.
    assert_eq!(
        route(&locations, "/sandbox/checkout/01a21a60"),
        Target::Upstream("shop_payment".into())
    );
    // Each service's own, asked of it directly, never through the site.
    for path in everywhere {
        assert_eq!(route(&locations, &path), Target::Answer(404), "{path}");
    }
}

#[test]
fn the_internal_api_reaches_no_service() {
    let locations = locations();
    let document = shop::api::internal_openapi();
    let paths: Vec<String> = document.paths.paths.keys().cloned().collect();
    assert!(!paths.is_empty());
    for path in paths {
        let path = path.replace(['{', '}'], "");
        assert_eq!(route(&locations, &path), Target::Answer(404), "{path}");
    }
    assert_eq!(route(&locations, "/internal/"), Target::Answer(404));
}

#[test]
fn anything_else_is_not_found_and_the_documentation_is_whole() {
    let locations = locations();
    assert_eq!(route(&locations, "/nowhere"), Target::Answer(404));
    assert_eq!(route(&locations, "/api/v1/other"), Target::Answer(404));
    assert_eq!(route(&locations, "/api-docs/openapi.json"), Target::Other);
    assert!(
        CONFIG.contains("alias /etc/shop/openapi.yaml"),
        "the whole document, as `shop openapi` writes it"
    );
    assert!(matches!(
        route(&locations, "/swagger-ui/"),
        Target::Upstream(_)
    ));
}
