//! Container images: `docker save` tarballs (`manifest.json` naming layer
//! tars) and OCI image layouts (`oci-layout`, `index.json`, `blobs/`), as a
//! directory or inside a tar. The layers are read from the top down, each a
//! stream, so that a file deleted (`.wh.NAME`), hidden by an opaque directory
//! (`.wh..wh..opq`) or replaced by an upper layer is never reported: what is
//! checked is the image's final filesystem, named by its path in the image,
//! with the archives inside it (a JAR, a tarball) walked as any archive's.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::compression::Compression;
use crate::error::{ArchiveError, EntryHeader};
use crate::member::{read_up_to, Entry, Visitor};
use crate::sparse::Hashing;
use crate::tar_reader::index_uncompressed;
pub use crate::tar_reader::{TarEntry, TarIndex};
use crate::walk::{Nesting, Walker};

/// JSON files of an image (manifests, configs, indexes) are small; anything
/// larger is a layer.
const MAX_METADATA_LEN: u64 = 4 << 20;

/// Where an image's files are.
pub enum Container {
    /// An OCI layout directory.
    Directory(PathBuf),
    /// A tar file holding the image, with its entries' names and (uncompressed
    /// tars only) where their data starts.
    Tar { path: PathBuf, compression: Compression, entries: TarIndex },
}

/// Whether a directory is an OCI image layout.
pub fn is_oci_layout(path: &Path) -> bool {
    path.join("oci-layout").is_file() && path.join("index.json").is_file()
}

/// Whether a tar with these entries holds an image: a `manifest.json`, or an OCI layout at its top.
pub fn is_image(index: &TarIndex) -> bool {
    index.contains_key("manifest.json") || (index.contains_key("oci-layout") && index.contains_key("index.json"))
}

/// Whether a tar entry is a `docker save` layer (`<id>/layer.tar`), read
/// with its image rather than as a tar of its own.
pub(crate) fn is_docker_save_layer(name: &str) -> bool {
    name == "layer.tar" || name.ends_with("/layer.tar")
}

/// Indexes an uncompressed tar file's entries, seeking over their data (a
/// read per entry header), and returns it as a container if it holds an image.
pub fn uncompressed_tar_image(path: &Path) -> Result<Option<Container>, ArchiveError> {
    let index = index_uncompressed(path)?;
    Ok(is_image(&index).then(|| Container::Tar { path: path.to_path_buf(), compression: Compression::None, entries: index }))
}

impl Container {
    /// Calls `read` with a stream of the named file of the image.
    fn with_file<T>(&self, name: &str, read: &mut dyn FnMut(&mut dyn Read) -> Result<T, ArchiveError>) -> Result<T, ArchiveError> {
        match self {
            Container::Directory(dir) => {
                let mut file = File::open(dir.join(name)).map_err(|e| ArchiveError::member(name, e))?;
                read(&mut file)
            }
            Container::Tar { path, compression, entries } => {
                let entry = entries.get(name).ok_or_else(|| ArchiveError::NotInImage { name: name.to_string() })?;
                let file = File::open(path).map_err(ArchiveError::Open)?;
                if let Some(offset) = entry.data_offset {
                    let mut file = file;
                    file.seek(SeekFrom::Start(offset)).map_err(|e| ArchiveError::member(name, e))?;
                    return read(&mut file.take(entry.size));
                }
                // A compressed tar cannot seek: decode it again up to the entry.
                let decoder = compression.decoder(file).map_err(|error| ArchiveError::Decompress { layer: false, error })?;
                let mut tar = tar::Archive::new(decoder);
                for candidate in tar.entries().map_err(|error| ArchiveError::NotTar { layer: false, error })? {
                    let mut candidate = candidate.map_err(|error| ArchiveError::TarEntry { layer: false, error })?;
                    let candidate_name = candidate.path().map(|p| p.display().to_string()).unwrap_or_default();
                    if candidate_name.trim_start_matches("./") == name {
                        return read(&mut candidate);
                    }
                }
                Err(ArchiveError::NotInImage { name: name.to_string() })
            }
        }
    }

    fn read_json(&self, name: &str) -> Result<Value, ArchiveError> {
        self.with_file(name, &mut |reader| {
            let mut text = Vec::new();
            reader.take(MAX_METADATA_LEN).read_to_end(&mut text).map_err(|e| ArchiveError::member(name, e))?;
            serde_json::from_slice(&text).map_err(|error| ArchiveError::Json { name: name.to_string(), error })
        })
    }

    /// The images it holds: a label (empty for a single image) and the
    /// layers' file names, bottom first.
    fn images(&self) -> Result<Vec<(String, Vec<String>)>, ArchiveError> {
        let is_docker_save = matches!(self, Container::Tar { entries, .. } if entries.contains_key("manifest.json"));
        let mut images = Vec::new();
        if is_docker_save {
            let manifest = self.read_json("manifest.json")?;
            for image in manifest.as_array().ok_or_else(|| ArchiveError::metadata("manifest.json", "not a list of images"))? {
                let label = image["RepoTags"][0].as_str().or(image["Config"].as_str()).unwrap_or("").to_string();
                let layers =
                    image["Layers"].as_array().ok_or_else(|| ArchiveError::metadata("manifest.json", "an image without Layers"))?;
                images.push((label, layers.iter().filter_map(|l| l.as_str().map(str::to_string)).collect()));
            }
        } else {
            self.oci_index("index.json", "", 0, &mut images)?;
        }
        if images.len() == 1 {
            images[0].0.clear();
        }
        Ok(images)
    }

    /// Follows an OCI index to its image manifests (nested indexes too, once).
    fn oci_index(&self, name: &str, label: &str, depth: usize, images: &mut Vec<(String, Vec<String>)>) -> Result<(), ArchiveError> {
        let index = self.read_json(name)?;
        for descriptor in index["manifests"].as_array().ok_or_else(|| ArchiveError::metadata(name, "no manifests"))? {
            let blob = blob_name(descriptor, name)?;
            let platform = &descriptor["platform"];
            let label = match (platform["os"].as_str(), platform["architecture"].as_str()) {
                (Some(os), Some(arch)) => format!("{os}/{arch}"),
                _ => descriptor["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap_or(label).to_string(),
            };
            let media_type = descriptor["mediaType"].as_str().unwrap_or("");
            if media_type.ends_with("image.index.v1+json") || media_type.ends_with("manifest.list.v2+json") {
                if depth < 2 {
                    self.oci_index(&blob, &label, depth + 1, images)?;
                }
                continue;
            }
            let manifest = self.read_json(&blob)?;
            let Some(layers) = manifest["layers"].as_array() else { continue };
            let layers = layers.iter().map(|layer| blob_name(layer, &blob)).collect::<Result<_, _>>()?;
            images.push((label, layers));
        }
        Ok(())
    }
}

/// `blobs/sha256/<hex>` for a descriptor's digest.
fn blob_name(descriptor: &Value, from: &str) -> Result<String, ArchiveError> {
    let digest = descriptor["digest"].as_str().ok_or_else(|| ArchiveError::metadata(from, "a descriptor without a digest"))?;
    let (algorithm, hex) = digest.split_once(':').ok_or_else(|| ArchiveError::metadata(from, format!("bad digest {digest:?}")))?;
    if algorithm.contains(['/', '.']) || hex.contains(['/', '.']) {
        return Err(ArchiveError::metadata(from, format!("bad digest {digest:?}")));
    }
    Ok(format!("blobs/{algorithm}/{hex}"))
}

/// What the layers above the current one did to the paths below them.
#[derive(Default)]
struct Overlay {
    /// Paths present in an upper layer: the lower ones are replaced.
    present: HashSet<String>,
    /// Non-directories present in an upper layer: they hide a lower directory's contents.
    files: HashSet<String>,
    /// Paths deleted by a `.wh.` file.
    deleted: HashSet<String>,
    /// Directories made opaque: nothing below them comes from lower layers.
    opaque: HashSet<String>,
}

impl Overlay {
    fn hides(&self, path: &str) -> bool {
        if self.present.contains(path) || self.deleted.contains(path) {
            return true;
        }
        ancestors(path).any(|dir| self.deleted.contains(dir) || self.opaque.contains(dir) || self.files.contains(dir))
    }

    fn absorb(&mut self, layer: Overlay) {
        self.present.extend(layer.present);
        self.files.extend(layer.files);
        self.deleted.extend(layer.deleted);
        self.opaque.extend(layer.opaque);
    }
}

/// `a/b/c` → `a/b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(path.rsplit_once('/').map(|(dir, _)| dir), |dir| dir.rsplit_once('/').map(|(parent, _)| parent))
}

/// Calls `visit` for every ELF file of the images' final filesystems (and
/// of the archives in them).
pub fn scan(container: &Container, outer: &str, hashing: Hashing, visit: Visitor<'_>) -> Result<(), ArchiveError> {
    let mut walker = Walker::new(visit, hashing);
    for (label, layers) in container.images()? {
        let filesystem = if label.is_empty() { outer.to_string() } else { format!("{outer}!{label}") };
        let mut overlay = Overlay::default();
        for layer in layers.iter().rev() {
            let changes = container.with_file(layer, &mut |reader| scan_layer(reader, &overlay, &filesystem, &mut walker))?;
            overlay.absorb(changes);
        }
    }
    walker.finish()
}

/// Walks a layer's files that no upper layer hides; returns what this layer hides below it.
fn scan_layer(reader: &mut dyn Read, upper: &Overlay, filesystem: &str, walker: &mut Walker<'_>) -> Result<Overlay, ArchiveError> {
    let mut magic = [0u8; 6];
    let got = read_up_to(reader, &mut magic).map_err(ArchiveError::Layer)?;
    let compression = Compression::from_magic(&magic[..got]).unwrap_or(Compression::None);
    let stream = std::io::Cursor::new(magic[..got].to_vec()).chain(reader);
    let decoder = compression.decoder(stream).map_err(|error| ArchiveError::Decompress { layer: true, error })?;
    let mut tar = tar::Archive::new(decoder);
    let mut this_layer = Overlay::default();
    for entry in tar.entries().map_err(|error| ArchiveError::NotTar { layer: true, error })? {
        let mut entry = entry.map_err(|error| ArchiveError::TarEntry { layer: true, error })?;
        let raw = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        let path = raw.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
        if name == ".wh..wh..opq" {
            this_layer.opaque.insert(dir.to_string());
            continue;
        }
        if let Some(deleted) = name.strip_prefix(".wh.") {
            this_layer.deleted.insert(if dir.is_empty() { deleted.to_string() } else { format!("{dir}/{deleted}") });
            continue;
        }
        if upper.hides(&path) {
            continue;
        }
        let entry_type = entry.header().entry_type();
        this_layer.present.insert(path.clone());
        if !entry_type.is_dir() {
            this_layer.files.insert(path.clone());
        }
        let (len, header_offset) = (entry.size(), entry.raw_header_position());
        let is_file = entry_type == tar::EntryType::Regular;
        let file = Entry { name: path, len, is_file, header: EntryHeader::Tar, header_offset, zip_data_offset: None, data: &mut entry };
        walker.entry(filesystem, Nesting::top(false), file)?;
    }
    Ok(this_layer)
}
