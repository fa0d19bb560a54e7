//! `manman deploy` and `manman deploy list`: a config placed on a host with its port bindings.

use serde_json::json;

use super::output::print;
use super::shared::{all_pages, Ctx, Failure, Outcome};
use crate::proto::v1 as pb;
use crate::views::deployment_json;
use crate::wire::ports::{parse_binding, PortRequest};

/// `deploy`: on `server` (0: the API places it), with `ports` as the operator wrote them.
pub fn deploy(ctx: &Ctx, server: i64, config: i64, ports: &[String]) -> Outcome {
    let mut bindings = Vec::new();
    for p in ports {
        match parse_binding(p).map_err(Failure::invalid)? {
            PortRequest::EveryPort => {
                let c = ctx
                    .client
                    .get_game_config_opt(
                        &pb::GetGameConfigRequest { config_id: config },
                        ctx.opt(),
                    )?
                    .config
                    .unwrap_or_default();
                bindings.extend(c.bindings_on_free_ports());
            }
            PortRequest::One {
                host_port,
                container_port,
                protocol,
            } => bindings.push(pb::PortBinding {
                host_port,
                container_port,
                protocol,
            }),
        }
    }
    let r = ctx.client.deploy_game_config_opt(
        &pb::DeployGameConfigRequest {
            server_id: server,
            config_id: config,
            ports: bindings,
        },
        ctx.opt(),
    )?;
    let d = r.deployment.unwrap_or_default();
    if ctx.json {
        let mut value = deployment_json(&d);
        value["updated"] = json!(r.updated);
        value["placed"] = json!(r.placed);
        println!("{value}");
    } else if r.updated {
        println!(
            "updated deployment {} (config {} on server {}): its port bindings are now {}",
            d.sgc_id,
            d.config_id,
            d.server_id,
            ports_text(&d)
        );
    } else {
        let placed = if r.placed {
            ", chosen for its free memory"
        } else {
            ""
        };
        println!(
            "deployment {} (config {} on server {}{placed}), ports {}",
            d.sgc_id,
            d.config_id,
            d.server_id,
            ports_text(&d)
        );
    }
    Ok(())
}

pub fn deploy_list(ctx: &Ctx, server: Option<i64>, config: Option<i64>) -> Outcome {
    let list = deployments(ctx, server, config)?;
    print(
        ctx,
        list.iter().map(deployment_json).collect(),
        &DEPLOYMENT_HEADERS,
        list.iter().map(deployment_row).collect(),
    );
    Ok(())
}

fn ports_text(d: &pb::Deployment) -> String {
    if d.ports.is_empty() {
        return "none".into();
    }
    d.ports
        .iter()
        .map(|p| format!("{}:{}/{}", p.host_port, p.container_port, p.protocol))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) const DEPLOYMENT_HEADERS: [&str; 5] =
    ["DEPLOYMENT", "SERVER", "CONFIG", "STATUS", "PORTS"];

pub(super) fn deployment_row(d: &pb::Deployment) -> Vec<String> {
    vec![
        d.sgc_id.to_string(),
        d.server_id.to_string(),
        d.config_id.to_string(),
        d.status.clone(),
        ports_text(d),
    ]
}

pub(super) fn deployments(
    ctx: &Ctx,
    server: Option<i64>,
    config: Option<i64>,
) -> Result<Vec<pb::Deployment>, Failure> {
    all_pages(|page_after| {
        let r = ctx.client.list_deployments_opt(
            &pb::ListDeploymentsRequest {
                server_id: server.unwrap_or(0),
                config_id: config.unwrap_or(0),
                page_after,
                page_size: 0,
            },
            ctx.opt(),
        )?;
        Ok((r.deployments, r.next_page_after))
    })
}
