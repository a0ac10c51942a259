//! The `image_ref` target: any text as an image reference (`ImageRef::parse`) and as a
//! digest (`Digest::parse`).
//!
//! Properties, for every reference that parses:
//! - its `Display` parses back to an equal reference, and prints the same again;
//! - its registry and repository make the same reference through `ImageRef::new`;
//! - its `name()` parses to the same registry and repository, without tag or digest.
//!
//! A digest that parses prints as given and parses again to an equal one.

use super::{Digest, ImageRef};

/// Checks the properties for `data`.
pub fn check(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    if let Ok(d) = Digest::parse(&input) {
        assert_eq!(d.as_str(), input, "a digest is kept as written");
        assert_eq!(Digest::parse(&d.to_string()).as_ref(), Ok(&d));
        assert!(d.short().len() <= 12);
    }
    let Ok(r) = ImageRef::parse(&input) else {
        return;
    };
    let shown = r.to_string();
    let back = ImageRef::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} parses, but its display {shown:?} does not: {e}"));
    assert_eq!(
        back, r,
        "{input:?} displays as {shown:?}, which parses differently"
    );
    assert_eq!(back.to_string(), shown);
    let bare = ImageRef::new(r.registry.clone(), r.repository.clone())
        .unwrap_or_else(|e| panic!("{input:?}: ImageRef::new refuses its own parts: {e}"));
    assert_eq!(
        (bare.registry.as_str(), bare.repository.as_str()),
        (r.registry.as_str(), r.repository.as_str()),
        "{input:?} through ImageRef::new"
    );
    let named = ImageRef::parse(&r.name())
        .unwrap_or_else(|e| panic!("{input:?}: its name {:?} does not parse: {e}", r.name()));
    assert_eq!(
        (
            &named.registry,
            &named.repository,
            &named.tag,
            &named.digest
        ),
        (&r.registry, &r.repository, &None, &None),
        "{input:?}: name()"
    );
    let _ = (r.is_ecr(), r.is_docker_hub());
}
