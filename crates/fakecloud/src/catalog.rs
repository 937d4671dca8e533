//! The fixed catalogue: regions, sizes, distribution images, shaped like DigitalOcean's.

use serde_json::{Value, json};

pub struct Region {
    pub slug: &'static str,
    pub name: &'static str,
}

pub struct Size {
    pub slug: &'static str,
    pub memory: u32,
    pub vcpus: u32,
    pub disk: u32,
    pub price_monthly: f64,
}

pub struct Image {
    pub id: u64,
    pub slug: &'static str,
    pub name: &'static str,
    pub distribution: &'static str,
}

pub const REGIONS: &[Region] = &[
    Region {
        slug: "nyc1",
        name: "New York 1",
    },
    Region {
        slug: "nyc3",
        name: "New York 3",
    },
    Region {
        slug: "sfo3",
        name: "San Francisco 3",
    },
    Region {
        slug: "ams3",
        name: "Amsterdam 3",
    },
    Region {
        slug: "fra1",
        name: "Frankfurt 1",
    },
    Region {
        slug: "lon1",
        name: "London 1",
    },
    Region {
        slug: "sgp1",
        name: "Singapore 1",
    },
    Region {
        slug: "tor1",
        name: "Toronto 1",
    },
    Region {
        slug: "blr1",
        name: "Bangalore 1",
    },
    Region {
        slug: "syd1",
        name: "Sydney 1",
    },
];

pub const SIZES: &[Size] = &[
    Size {
        slug: "s-1vcpu-512mb-10gb",
        memory: 512,
        vcpus: 1,
        disk: 10,
        price_monthly: 4.0,
    },
    Size {
        slug: "s-1vcpu-1gb",
        memory: 1024,
        vcpus: 1,
        disk: 25,
        price_monthly: 6.0,
    },
    Size {
        slug: "s-1vcpu-2gb",
        memory: 2048,
        vcpus: 1,
        disk: 50,
        price_monthly: 12.0,
    },
    Size {
        slug: "s-2vcpu-2gb",
        memory: 2048,
        vcpus: 2,
        disk: 60,
        price_monthly: 18.0,
    },
    Size {
        slug: "s-2vcpu-4gb",
        memory: 4096,
        vcpus: 2,
        disk: 80,
        price_monthly: 24.0,
    },
    Size {
        slug: "s-4vcpu-8gb",
        memory: 8192,
        vcpus: 4,
        disk: 160,
        price_monthly: 48.0,
    },
    Size {
        slug: "c-2",
        memory: 4096,
        vcpus: 2,
        disk: 25,
        price_monthly: 42.0,
    },
];

pub const IMAGES: &[Image] = &[
    Image {
        id: 160_000_001,
        slug: "ubuntu-24-04-x64",
        name: "24.04 (LTS) x64",
        distribution: "Ubuntu",
    },
    Image {
        id: 160_000_002,
        slug: "ubuntu-22-04-x64",
        name: "22.04 (LTS) x64",
        distribution: "Ubuntu",
    },
    Image {
        id: 160_000_003,
        slug: "debian-12-x64",
        name: "12 x64",
        distribution: "Debian",
    },
    Image {
        id: 160_000_004,
        slug: "fedora-42-x64",
        name: "42 x64",
        distribution: "Fedora",
    },
];

const REGION_FEATURES: &[&str] = &["backups", "ipv6", "metadata", "install_agent", "storage"];

pub fn region(slug: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|r| r.slug == slug)
}

pub fn size(slug: &str) -> Option<&'static Size> {
    SIZES.iter().find(|s| s.slug == slug)
}

/// By slug or numeric id, as DigitalOcean accepts both.
pub fn image(slug_or_id: &str) -> Option<&'static Image> {
    IMAGES
        .iter()
        .find(|i| i.slug == slug_or_id || i.id.to_string() == slug_or_id)
}

pub fn region_json(r: &Region) -> Value {
    json!({
        "slug": r.slug,
        "name": r.name,
        "features": REGION_FEATURES,
        "available": true,
        "sizes": SIZES.iter().map(|s| s.slug).collect::<Vec<_>>(),
    })
}

pub fn size_json(s: &Size) -> Value {
    json!({
        "slug": s.slug,
        "memory": s.memory,
        "vcpus": s.vcpus,
        "disk": s.disk,
        "transfer": 1.0,
        "price_monthly": s.price_monthly,
        "price_hourly": (s.price_monthly / 672.0 * 1e6).round() / 1e6,
        "regions": REGIONS.iter().map(|r| r.slug).collect::<Vec<_>>(),
        "available": true,
        "description": "Basic",
        "disk_info": [{"type": "local", "size": {"amount": s.disk, "unit": "gib"}}],
    })
}

pub fn image_json(i: &Image) -> Value {
    json!({
        "id": i.id,
        "name": i.name,
        "distribution": i.distribution,
        "slug": i.slug,
        "public": true,
        "regions": REGIONS.iter().map(|r| r.slug).collect::<Vec<_>>(),
        "created_at": "2025-04-24T16:00:00Z",
        "type": "base",
        "min_disk_size": 7,
        "size_gigabytes": 2.36,
        "description": format!("{} {}", i.distribution, i.name),
        "tags": [],
        "status": "available",
        "error_message": "",
    })
}
