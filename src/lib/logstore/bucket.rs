//! The S3 bucket holding archived logs and backups, over rust-s3's blocking client (no async
//! runtime). Hosts never get its keys: for a backup they get pre-signed URLs made here.

use std::time::Duration;

use ::s3::creds::Credentials;
use ::s3::{Bucket, BucketConfiguration, Region};

use crate::config::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// A custom endpoint (MinIO, moto, ...); `None` = AWS.
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

impl S3Config {
    /// `S3_BUCKET` `S3_REGION` `S3_ENDPOINT` `S3_ACCESS_KEY` `S3_SECRET_KEY`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bucket = env.string("S3_BUCKET", "manman-logs");
        if bucket.is_empty() || bucket.contains('/') {
            return Err(ConfigError::new("S3_BUCKET", "must be a bucket name"));
        }
        let endpoint = env.get("S3_ENDPOINT").filter(|e| !e.is_empty());
        if let Some(e) = endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ConfigError::new(
                    "S3_ENDPOINT",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        Ok(S3Config {
            bucket,
            region: env.string("S3_REGION", "us-east-1"),
            endpoint: endpoint.map(str::to_string),
            access_key: env.get("S3_ACCESS_KEY").map(str::to_string),
            secret_key: env.get("S3_SECRET_KEY").map(str::to_string),
        })
    }

    /// A loopback test server (moto) with dummy credentials.
    pub fn local(endpoint: &str, bucket: &str) -> Self {
        S3Config {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint.into()),
            access_key: Some("manman".into()),
            secret_key: Some("manman".into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("S3 request failed")]
    Request(#[from] ::s3::error::S3Error),
    #[error("no usable S3 credentials")]
    Credentials(#[source] ::s3::creds::error::CredentialsError),
    #[error("S3 answered HTTP {status} for {what}")]
    Status { status: u16, what: String },
}

/// One bucket. Requests time out (so an unreachable server cannot stall the archiver) and
/// fail with an error the caller retries.
pub struct ObjectStore {
    bucket: Box<Bucket>,
    config: S3Config,
}

impl ObjectStore {
    pub fn new(config: &S3Config) -> Result<Self, StoreError> {
        let bucket = Bucket::new(&config.bucket, region(config), credentials(config)?)
            .map_err(StoreError::Request)?;
        // Custom endpoints (MinIO, moto) want path-style URLs.
        let mut bucket = match config.endpoint {
            Some(_) => bucket.with_path_style(),
            None => bucket,
        };
        bucket.set_request_timeout(Some(Duration::from_secs(10)));
        Ok(ObjectStore {
            bucket,
            config: config.clone(),
        })
    }

    pub fn bucket_name(&self) -> &str {
        &self.config.bucket
    }

    /// Creates the bucket unless it exists (development and tests; production buckets are
    /// usually made by the operator with their own policies).
    pub fn ensure_bucket(&self) -> Result<(), StoreError> {
        if self.bucket.exists().map_err(request)? {
            return Ok(());
        }
        let created = Bucket::create_with_path_style(
            &self.config.bucket,
            region(&self.config),
            credentials(&self.config)?,
            BucketConfiguration::private(),
        )
        .map_err(request)?;
        match created.response_code {
            200..=299 | 409 => Ok(()),
            status => Err(StoreError::Status {
                status,
                what: format!("creating bucket {}", self.config.bucket),
            }),
        }
    }

    /// Deletes the (empty) bucket.
    pub fn delete_bucket(&self) -> Result<(), StoreError> {
        let status = self.bucket.delete().map_err(request)?;
        check(status, &format!("deleting bucket {}", self.config.bucket))
    }

    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let response = self
            .bucket
            .put_object_with_content_type(key, bytes, "application/gzip")
            .map_err(request)?;
        check(response.status_code(), key)
    }

    /// The object's bytes, or `None` if there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self.bucket.get_object(key).map_err(request)?;
        match response.status_code() {
            404 => Ok(None),
            status => check(status, key).map(|()| Some(response.to_vec())),
        }
    }

    /// Opens a multipart upload; its id.
    pub fn start_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        Ok(self
            .bucket
            .initiate_multipart_upload(key, content_type)
            .map_err(request)?
            .upload_id)
    }

    /// A URL that lets its holder PUT one part of an upload, and nothing else, until it
    /// expires.
    pub fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        expiry: Duration,
    ) -> Result<String, StoreError> {
        let (access_key, secret_key) = (
            self.bucket
                .access_key()
                .map_err(request)?
                .unwrap_or_default(),
            self.bucket
                .secret_key()
                .map_err(request)?
                .unwrap_or_default(),
        );
        let token = match self.bucket.security_token().map_err(request)? {
            Some(t) => Some(t),
            None => self.bucket.session_token().map_err(request)?,
        };
        let region = self.bucket.region();
        let signer = super::presign::Signer {
            access_key: &access_key,
            secret_key: &secret_key,
            token: token.as_ref(),
            region: &region,
        };
        let object_url = format!(
            "{}/{}",
            self.bucket.url(),
            ::s3::signing::uri_encode(key.trim_start_matches('/'), false)
        );
        let part = part.to_string();
        signer
            .presign(
                "PUT",
                &object_url,
                &[("partNumber", &part), ("uploadId", upload_id)],
                time::OffsetDateTime::now_utc(),
                expiry_secs(expiry),
            )
            .map_err(request)
    }

    pub fn presign_put(&self, key: &str, expiry: Duration) -> Result<String, StoreError> {
        self.bucket
            .presign_put(key, expiry_secs(expiry), None, None)
            .map_err(request)
    }

    pub fn presign_get(&self, key: &str, expiry: Duration) -> Result<String, StoreError> {
        self.bucket
            .presign_get(key, expiry_secs(expiry), None)
            .map_err(request)
    }

    /// Joins the uploaded parts (number, ETag) into the object.
    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<(), StoreError> {
        let parts = parts
            .into_iter()
            .map(|(part_number, etag)| ::s3::serde_types::Part { part_number, etag })
            .collect();
        let response = self
            .bucket
            .complete_multipart_upload(key, upload_id, parts)
            .map_err(request)?;
        check(response.status_code(), key)
    }

    /// Drops an unfinished upload and the parts stored for it (S3 bills them until then).
    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.bucket.abort_upload(key, upload_id).map_err(request)
    }

    /// Unfinished uploads under `prefix`: (key, upload id).
    pub fn open_multiparts(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .bucket
            .list_multiparts_uploads(Some(prefix), None)
            .map_err(request)?
            .into_iter()
            .flat_map(|page| page.uploads)
            .map(|u| (u.key, u.id))
            .collect())
    }

    /// Deletes one object (absent is fine).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let status = self
            .bucket
            .delete_object(key)
            .map_err(request)?
            .status_code();
        match status {
            404 => Ok(()),
            status => check(status, key),
        }
    }

    pub fn delete_all(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for page in self
            .bucket
            .list(prefix.to_string(), None)
            .map_err(request)?
        {
            for object in page.contents {
                check(
                    self.bucket
                        .delete_object(&object.key)
                        .map_err(request)?
                        .status_code(),
                    &object.key,
                )?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// S3's limit for a pre-signed URL is 7 days.
fn expiry_secs(d: Duration) -> u32 {
    d.as_secs().clamp(1, 7 * 86_400) as u32
}

fn region(config: &S3Config) -> Region {
    match &config.endpoint {
        Some(endpoint) => Region::Custom {
            region: config.region.clone(),
            endpoint: endpoint.clone(),
        },
        None => config.region.parse().unwrap_or(Region::UsEast1),
    }
}

fn credentials(config: &S3Config) -> Result<Credentials, StoreError> {
    match (&config.access_key, &config.secret_key) {
        (Some(access), Some(secret)) => {
            Credentials::new(Some(access), Some(secret), None, None, None)
        }
        // The usual AWS chain: environment, profile, instance metadata.
        _ => Credentials::default(),
    }
    .map_err(StoreError::Credentials)
}

fn request(e: ::s3::error::S3Error) -> StoreError {
    StoreError::Request(e)
}

fn check(status: u16, key: &str) -> Result<(), StoreError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(StoreError::Status {
            status,
            what: key.to_string(),
        })
    }
}
