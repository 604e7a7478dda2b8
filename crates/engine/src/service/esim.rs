//! eSIM use cases: profile templates (checked SAIP packages) and the
//! download of a personalised profile package.

use simbatch_saip::{Package, TemplateSummary};
use simbatch_store::{StoreError, TemplateInfo, Tenant};

use super::{internal, valid_iccid, Service, ServiceError};

/// Longest template name (Simlessly's configName).
pub const MAX_TEMPLATE_NAME: usize = 128;

/// Largest template accepted, in bytes (TS.48 packages are about 12 KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// A stored template and what it is.
#[derive(Debug, Clone)]
pub struct TemplateView {
    /// Name, size, hash and time.
    pub info: TemplateInfo,
    /// Version, ICCID and personalisable files; `None` for a file stored
    /// before templates were checked, which no longer parses.
    pub summary: Option<TemplateSummary>,
}

/// Check a template name: 1–128 printable characters without `/`.
pub fn check_template_name(name: &str) -> Result<(), ServiceError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_TEMPLATE_NAME || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ServiceError::Refused {
            code: "template_name_invalid",
            message: format!(
                "a template name must be 1 to {MAX_TEMPLATE_NAME} printable characters without '/'"
            ),
        });
    }
    Ok(())
}

/// Parse and check template bytes: a profile package with everything
/// personalisation writes to.
pub fn check_template(content: &[u8]) -> Result<TemplateSummary, ServiceError> {
    if content.len() > MAX_TEMPLATE_BYTES {
        return Err(ServiceError::Refused {
            code: "template_invalid",
            message: format!("a template is at most {MAX_TEMPLATE_BYTES} bytes"),
        });
    }
    Package::parse_template(content)
        .map(|(_, s)| s)
        .map_err(|e| ServiceError::Refused {
            code: "template_invalid",
            message: format!("not a usable SAIP profile package: {e}"),
        })
}

impl Service {
    /// Register a template after checking it; `Conflict` if the name is taken.
    pub async fn add_template(
        &self,
        name: &str,
        content: &[u8],
    ) -> Result<TemplateView, ServiceError> {
        check_template_name(name)?;
        // Parsing ~12 KB is well under a millisecond: fine on the executor.
        let summary = check_template(content)?;
        let info = self
            .store
            .add_template(name, content)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    ServiceError::Conflict(format!("template '{name}' already exists"))
                }
                other => internal(other),
            })?;
        Ok(TemplateView {
            info,
            summary: Some(summary),
        })
    }

    /// Every template, by name.
    pub async fn list_templates(&self) -> Result<Vec<TemplateInfo>, ServiceError> {
        self.store.list_templates().await.map_err(internal)
    }

    /// One template and what it is.
    pub async fn get_template(&self, name: &str) -> Result<TemplateView, ServiceError> {
        let not_found = || ServiceError::NotFound("template".into());
        if check_template_name(name).is_err() {
            return Err(not_found());
        }
        let info = self
            .list_templates()
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(not_found)?;
        let content = self
            .store
            .template_content(name)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        Ok(TemplateView {
            info,
            summary: Package::parse_template(&content).ok().map(|(_, s)| s),
        })
    }

    /// The personalised profile package of the tenant's SIM (DER); the
    /// download is recorded in the SIM's history. Other tenants get NotFound.
    pub async fn download_package(
        &self,
        tenant: &Tenant,
        iccid: &str,
    ) -> Result<Vec<u8>, ServiceError> {
        let not_found = || ServiceError::NotFound("profile package".into());
        if !valid_iccid(iccid) {
            return Err(not_found());
        }
        self.store
            .download_package(&tenant.id, iccid)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)
    }
}
