//! Who ships a library (`check --owners`): the dependency a copy of it
//! belongs to, recognised from where the copy lies (a Gradle cache, a Maven
//! repository, `node_modules`, Flutter's pub cache), and the ranking of the
//! owners of failing libraries. Pure: the CLI walks the directories, reads
//! the archives and hashes the files.

use serde::{Deserialize, Serialize};

/// Where an owner was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerKind {
    /// Gradle's module cache (`modules-2/files-2.1/GROUP/ARTIFACT/VERSION/HASH/FILE`).
    Gradle,
    /// An AAR Gradle extracted (`transforms-*/…/NAME-VERSION/jni/ABI/lib*.so`),
    /// named from its directory.
    GradleTransform,
    /// A Maven repository (`GROUP/PATH/ARTIFACT/VERSION/ARTIFACT-VERSION.aar`).
    Maven,
    /// An npm package (`node_modules`, its nearest `package.json`).
    Npm,
    /// A Dart/Flutter package of the pub cache (`hosted/HOST/NAME-VERSION`).
    Pub,
}

/// A dependency that ships a library, and the copy it ships.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// Where it was recognised.
    pub kind: OwnerKind,
    /// `GROUP:ARTIFACT` for Gradle and Maven, the package's name otherwise.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The copy: a file, or `archive!/member`.
    pub source: String,
}

impl Owner {
    /// How text output names it: `com.facebook.react:hermes-engine 0.11.0`,
    /// `npm hermes-engine@0.11.0`, `pub NAME VERSION`.
    pub fn label(&self) -> String {
        match self.kind {
            OwnerKind::Gradle | OwnerKind::Maven => format!("{} {}", self.name, self.version),
            OwnerKind::GradleTransform => format!("{} {} (gradle transform)", self.name, self.version),
            OwnerKind::Npm => format!("npm {}@{}", self.name, self.version),
            OwnerKind::Pub => format!("pub {} {}", self.name, self.version),
        }
    }
}

/// An owner recognised from a path, before its source is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinates {
    /// Where it was recognised.
    pub kind: OwnerKind,
    /// `GROUP:ARTIFACT` or the package's name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl Coordinates {
    /// The owner of the copy at `source`.
    pub fn owner(self, source: String) -> Owner {
        Owner { kind: self.kind, name: self.name, version: self.version, source }
    }
}

/// The owner that the directories of `path` (its components, file last)
/// name when it lies in Gradle's module cache, Gradle's transforms or the
/// pub cache. Maven repositories need their group ([`maven_artifact`]) and
/// npm packages their `package.json` ([`npm_package`]).
pub fn layout_owner(path: &[&str]) -> Option<Coordinates> {
    gradle_module(path).or_else(|| pub_package(path)).or_else(|| gradle_transform(path))
}

/// `.../modules-2/files-2.1/GROUP/ARTIFACT/VERSION/HASH/FILE`.
fn gradle_module(path: &[&str]) -> Option<Coordinates> {
    let at = path.windows(2).rposition(|pair| pair == ["modules-2", "files-2.1"])? + 2;
    match path.get(at..)? {
        [group, artifact, version, _hash, _file] => {
            Some(Coordinates { kind: OwnerKind::Gradle, name: format!("{group}:{artifact}"), version: version.to_string() })
        }
        _ => None,
    }
}

/// `.../hosted/HOST/NAME-VERSION/...`; pub names have no `-`.
fn pub_package(path: &[&str]) -> Option<Coordinates> {
    let at = path.iter().rposition(|&c| c == "hosted")?;
    let package = path.get(at + 2..path.len() - 1)?.first()?;
    let (name, version) = package.split_once('-')?;
    let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (valid_name && version.starts_with(|c: char| c.is_ascii_digit())).then(|| Coordinates {
        kind: OwnerKind::Pub,
        name: name.to_string(),
        version: version.to_string(),
    })
}

/// A library Gradle extracted from an AAR: `jni/ABI/lib*.so` under a
/// `transforms*` directory; the directory above `jni` is the AAR's name
/// (`jetified-fbjni-0.3.0`, `hermes-android-0.71.0-release`).
fn gradle_transform(path: &[&str]) -> Option<Coordinates> {
    let transforms = path.iter().rposition(|c| c.starts_with("transforms"))?;
    let jni = path.iter().rposition(|&c| c == "jni").filter(|&jni| jni > transforms + 1)?;
    let directory = path[jni - 1];
    let directory = directory.strip_prefix("jetified-").unwrap_or(directory);
    let (name, version) = split_name_version(directory);
    Some(Coordinates { kind: OwnerKind::GradleTransform, name: name.to_string(), version: version.to_string() })
}

/// `fbjni-0.3.0` → (`fbjni`, `0.3.0`): the version starts at the first `-` followed by a digit.
fn split_name_version(text: &str) -> (&str, &str) {
    let split = text.match_indices('-').map(|(at, _)| at).find(|&at| text[at + 1..].starts_with(|c: char| c.is_ascii_digit()));
    match split {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    }
}

/// An artifact of a Maven repository: `.../ARTIFACT/VERSION/ARTIFACT-VERSION[-CLASSIFIER].EXT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MavenArtifact {
    /// How many components precede the `ARTIFACT` directory (the group's path ends there).
    pub artifact_at: usize,
    /// The artifact's name.
    pub artifact: String,
    /// Its version.
    pub version: String,
}

/// Whether `path` has a Maven repository's layout.
pub fn maven_artifact(path: &[&str]) -> Option<MavenArtifact> {
    let [.., artifact, version, file] = path else { return None };
    let rest = file.strip_prefix(artifact)?.strip_prefix('-')?.strip_prefix(version)?;
    if artifact.is_empty() || version.is_empty() || !(rest.starts_with('.') || rest.starts_with('-')) {
        return None;
    }
    Some(MavenArtifact { artifact_at: path.len() - 3, artifact: artifact.to_string(), version: version.to_string() })
}

/// The owner of a Maven artifact. Its group is the path above the artifact's
/// directory, from the repository's root: where `declared` (the `groupId` of
/// the artifact's `maven-metadata.xml` or POM) says it starts, when the path
/// ends with it; else after a `repository` directory (`~/.m2/repository`);
/// else after the first `root` components (the directory searched).
pub fn maven_owner(path: &[&str], artifact: &MavenArtifact, declared: Option<&str>, root: usize) -> Coordinates {
    let above = &path[..artifact.artifact_at];
    let declared_parts: Option<Vec<&str>> = declared.map(|group| group.split('.').collect());
    let group = match declared_parts {
        Some(parts) if !parts.is_empty() && above.ends_with(&parts) => parts.join("."),
        _ => {
            let start = above.iter().rposition(|&c| c == "repository").map_or(root.min(above.len()), |at| at + 1);
            above[start..].join(".")
        }
    };
    Coordinates { kind: OwnerKind::Maven, name: format!("{group}:{}", artifact.artifact), version: artifact.version.clone() }
}

/// The `groupId` a `maven-metadata.xml` or POM declares for its artifact
/// (not its `<parent>`'s).
pub fn declared_group(xml: &str) -> Option<&str> {
    let without_parent = match (xml.find("<parent>"), xml.find("</parent>")) {
        (Some(start), Some(end)) if start < end => [&xml[..start], &xml[end..]],
        _ => [xml, ""],
    };
    without_parent.iter().find_map(|part| {
        let start = part.find("<groupId>")? + "<groupId>".len();
        let end = part[start..].find("</groupId>")? + start;
        Some(part[start..end].trim())
    })
}

/// The npm package a `package.json` describes.
pub fn npm_package(package_json: &str) -> Option<Coordinates> {
    let value: serde_json::Value = serde_json::from_str(package_json).ok()?;
    let name = value.get("name")?.as_str()?;
    let version = value.get("version")?.as_str()?;
    Some(Coordinates { kind: OwnerKind::Npm, name: name.to_string(), version: version.to_string() })
}

/// The owners that one content hash has everywhere it was found: one per
/// (kind, name, version), with the first source in path order; an owner
/// named only from a Gradle transform's directory is dropped when Gradle's
/// module cache holds the same content.
pub fn merge_owners(mut owners: Vec<Owner>) -> Vec<Owner> {
    owners.sort();
    owners.dedup_by(|later, first| (later.kind, &later.name, &later.version) == (first.kind, &first.name, &first.version));
    if owners.iter().any(|o| o.kind == OwnerKind::Gradle) {
        owners.retain(|o| o.kind != OwnerKind::GradleTransform);
    }
    owners
}

/// The owners of failing libraries, most failing libraries first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerRanking {
    /// (label, failing libraries it ships), by count then label.
    pub owners: Vec<(String, usize)>,
    /// Failing libraries that no owner ships.
    pub unowned: usize,
}

/// Ranks the owners of the failing libraries, given each failing library's owners.
pub fn rank_failing<'a>(failing: impl IntoIterator<Item = &'a [Owner]>) -> OwnerRanking {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut unowned = 0;
    for owners in failing {
        if owners.is_empty() {
            unowned += 1;
        }
        let mut labels: Vec<String> = owners.iter().map(Owner::label).collect();
        labels.sort();
        labels.dedup();
        for label in labels {
            *counts.entry(label).or_default() += 1;
        }
    }
    let mut owners: Vec<(String, usize)> = counts.into_iter().collect();
    owners.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    OwnerRanking { owners, unowned }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str) -> Vec<&str> {
        path.split('/').filter(|c| !c.is_empty()).collect()
    }

    fn coordinates(kind: OwnerKind, name: &str, version: &str) -> Coordinates {
        Coordinates { kind, name: name.to_string(), version: version.to_string() }
    }

    #[test]
    fn gradle_modules_are_group_artifact_version() {
        let path = parts(
            "/h/.gradle/caches/modules-2/files-2.1/com.facebook.react/hermes-android/0.71.0/0a1b2c/hermes-android-0.71.0-release.aar",
        );
        assert_eq!(layout_owner(&path), Some(coordinates(OwnerKind::Gradle, "com.facebook.react:hermes-android", "0.71.0")));
        // Not the file's place in that layout: a directory too deep or too shallow.
        assert_eq!(layout_owner(&parts("/c/modules-2/files-2.1/g/a/v/x.aar")), None);
    }

    #[test]
    fn gradle_transforms_are_named_from_the_directory_above_jni() {
        let old = parts("/h/.gradle/caches/transforms-3/5f3e/transformed/jetified-fbjni-0.3.0/jni/arm64-v8a/libfbjni.so");
        assert_eq!(layout_owner(&old), Some(coordinates(OwnerKind::GradleTransform, "fbjni", "0.3.0")));
        let new = parts("/h/.gradle/caches/8.9/transforms/77aa/transformed/hermes-android-0.71.0-release/jni/x86/libhermes.so");
        assert_eq!(layout_owner(&new), Some(coordinates(OwnerKind::GradleTransform, "hermes-android", "0.71.0-release")));
        assert_eq!(layout_owner(&parts("/h/transforms-3/jni/x86/libz.so")), None);
    }

    #[test]
    fn pub_packages_are_name_dash_version_under_hosted() {
        let path = parts("/h/.pub-cache/hosted/pub.dev/sqlite3_flutter_libs-0.5.24/android/libs/arm64-v8a/libsqlite3.so");
        assert_eq!(layout_owner(&path), Some(coordinates(OwnerKind::Pub, "sqlite3_flutter_libs", "0.5.24")));
        assert_eq!(layout_owner(&parts("/h/.pub-cache/hosted/pub.dev/Not-a-package/x.so")), None);
    }

    #[test]
    fn maven_groups_come_from_the_declared_group_or_the_repository_root() {
        let path = parts("/n/node_modules/jsc-android/dist/org/webkit/android-jsc/r250231/android-jsc-r250231.aar");
        let artifact = maven_artifact(&path).unwrap();
        assert_eq!((artifact.artifact.as_str(), artifact.version.as_str()), ("android-jsc", "r250231"));
        let owner = |declared, root| maven_owner(&path, &artifact, declared, root).name;
        assert_eq!(owner(Some("org.webkit"), 0), "org.webkit:android-jsc");
        // A declared group the path does not end with is not believed.
        assert_eq!(owner(Some("com.other"), 4), "org.webkit:android-jsc");
        let m2 = parts("/h/.m2/repository/com/facebook/react/hermes-engine/0.11.0/hermes-engine-0.11.0-debug.aar");
        let artifact = maven_artifact(&m2).unwrap();
        assert_eq!(maven_owner(&m2, &artifact, None, 1), coordinates(OwnerKind::Maven, "com.facebook.react:hermes-engine", "0.11.0"));
        assert_eq!(maven_artifact(&parts("/x/a/1.0/b-1.0.aar")), None);
        assert_eq!(maven_artifact(&parts("/x/a/1.0/a-1.01.aar")), None);
    }

    #[test]
    fn the_declared_group_is_the_projects_not_its_parents() {
        let pom = "<project><parent><groupId>org.parent</groupId></parent><groupId> com.child </groupId></project>";
        assert_eq!(declared_group(pom), Some("com.child"));
        assert_eq!(declared_group("<metadata><groupId>org.webkit</groupId></metadata>"), Some("org.webkit"));
        assert_eq!(declared_group("<project><parent><groupId>org.parent</groupId></parent></project>"), None);
    }

    #[test]
    fn npm_packages_are_their_package_json() {
        assert_eq!(
            npm_package(r#"{"name": "hermes-engine", "version": "0.11.0", "files": []}"#),
            Some(coordinates(OwnerKind::Npm, "hermes-engine", "0.11.0"))
        );
        assert_eq!(npm_package(r#"{"name": "no-version"}"#), None);
        assert_eq!(npm_package("not json"), None);
    }

    fn owner(kind: OwnerKind, name: &str, version: &str, source: &str) -> Owner {
        coordinates(kind, name, version).owner(source.to_string())
    }

    #[test]
    fn merged_owners_are_one_per_dependency_and_gradle_names_beat_directory_names() {
        let merged = merge_owners(vec![
            owner(OwnerKind::Npm, "hermes-engine", "0.11.0", "b.aar!/jni/x86/libhermes.so"),
            owner(OwnerKind::GradleTransform, "hermes-engine", "0.11.0", "t/jni/x86/libhermes.so"),
            owner(OwnerKind::Npm, "hermes-engine", "0.11.0", "a.aar!/jni/x86/libhermes.so"),
            owner(OwnerKind::Gradle, "com.facebook.react:hermes-engine", "0.11.0", "g.aar!/jni/x86/libhermes.so"),
        ]);
        let labels: Vec<String> = merged.iter().map(Owner::label).collect();
        assert_eq!(labels, ["com.facebook.react:hermes-engine 0.11.0", "npm hermes-engine@0.11.0"]);
        assert_eq!(merged[1].source, "a.aar!/jni/x86/libhermes.so");
    }

    #[test]
    fn failing_owners_rank_by_count_then_label() {
        let a = owner(OwnerKind::Npm, "a", "1", "x");
        let b = owner(OwnerKind::Npm, "b", "1", "y");
        let failing: Vec<Vec<Owner>> = vec![vec![b.clone()], vec![a.clone(), b.clone()], vec![a.clone()], vec![], vec![b]];
        let ranking = rank_failing(failing.iter().map(Vec::as_slice));
        assert_eq!(ranking.owners, [("npm b@1".to_string(), 3), ("npm a@1".to_string(), 2)]);
        assert_eq!(ranking.unowned, 1);
    }
}
