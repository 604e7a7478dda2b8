//! Administration subcommands: migrate, keys, templates. Each prints JSON lines.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use simbatch_engine::service::{check_template, check_template_name};

use crate::config::Db;

/// `simbatch keys …`
#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key (and the tenant if needed); prints the token once.
    Create {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
    },
    /// List keys (never secrets).
    List,
    /// Revoke a key by its id.
    Revoke {
        /// Key id (`sk_…`).
        key_id: String,
    },
}

/// `simbatch templates …`
#[derive(Subcommand, Debug)]
pub enum TemplatesAction {
    /// Register a profile template file under a name (Simlessly's configName).
    Add {
        /// Template name.
        name: String,
        /// Template file.
        file: PathBuf,
    },
    /// List templates.
    List,
}

/// Apply migrations and exit.
pub async fn migrate(db: Db) -> Result<(), String> {
    let store = db.open().await?;
    println!("{}", json!({"migrated": true, "backend": store.backend()}));
    Ok(())
}

/// Run a keys action.
pub async fn keys(db: Db, action: KeysAction) -> Result<(), String> {
    let store = db.open().await?;
    match action {
        KeysAction::Create { tenant } => {
            let tenant = tenant.trim();
            if tenant.is_empty() || tenant.len() > 64 {
                return Err("tenant name must be 1 to 64 characters".into());
            }
            let key = store.create_key(tenant).await.map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string(&key).map_err(|e| e.to_string())?
            );
        }
        KeysAction::List => {
            for k in store.list_keys().await.map_err(|e| e.to_string())? {
                println!("{}", serde_json::to_string(&k).map_err(|e| e.to_string())?);
            }
        }
        KeysAction::Revoke { key_id } => {
            if !store.revoke_key(&key_id).await.map_err(|e| e.to_string())? {
                return Err(format!("no active key '{key_id}'"));
            }
            println!("{}", json!({"revoked": key_id}));
        }
    }
    Ok(())
}

/// Run a templates action.
pub async fn templates(db: Db, action: TemplatesAction) -> Result<(), String> {
    let store = db.open().await?;
    match action {
        TemplatesAction::Add { name, file } => {
            let name = name.trim().to_owned();
            check_template_name(&name).map_err(|e| e.to_string())?;
            let content = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            if content.is_empty() {
                return Err(format!("{}: the file is empty", file.display()));
            }
            // The same check as POST /v1/templates: a SAIP profile package that can be personalised.
            let summary =
                check_template(&content).map_err(|e| format!("{}: {e}", file.display()))?;
            let info = store
                .add_template(&name, &content)
                .await
                .map_err(|e| e.to_string())?;
            let mut line = serde_json::to_value(&info).map_err(|e| e.to_string())?;
            line["version"] = summary.version.into();
            line["iccid"] = summary.iccid.into();
            line["aka_parameters"] = summary.aka_parameters.into();
            println!("{line}");
        }
        TemplatesAction::List => {
            for t in store.list_templates().await.map_err(|e| e.to_string())? {
                println!("{}", serde_json::to_string(&t).map_err(|e| e.to_string())?);
            }
        }
    }
    Ok(())
}
