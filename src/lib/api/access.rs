//! Which role each RPC needs: the one table of the API's access rules. Unknown names fail
//! closed (admin).

use crate::auth::Role;

/// The role `rpc` (the generated method's name) needs; `None` for the one call made without a
/// token (`enroll_host`: its one-time secret is the credential).
pub fn needed_role(rpc: &str) -> Option<Role> {
    Some(match rpc {
        "enroll_host" => return None,
        "register_server" => Role::Host,
        "list_servers"
        | "get_server"
        | "list_games"
        | "list_game_configs"
        | "get_game_config"
        | "list_deployments"
        | "list_sessions"
        | "get_session"
        | "get_historical_logs"
        | "stream_historical_logs"
        | "list_backups"
        | "get_backup"
        | "get_restore"
        | "get_maintenance"
        | "get_session_history"
        | "get_server_history"
        | "list_schedules"
        | "get_schedule" => Role::Viewer,
        "start_session"
        | "stop_session"
        | "send_input"
        | "drain_server"
        | "create_backup"
        | "restore_backup"
        | "pin_backup"
        | "schedule_maintenance"
        | "create_schedule"
        | "pause_schedule"
        | "delete_schedule"
        | "run_schedule_now"
        | "cancel_maintenance" => Role::Operator,
        // The host running a backup or restore (checked against the backup's server).
        "presign_backup_parts" | "report_backup_progress" | "finish_backup" | "finish_restore" => {
            Role::Host
        }
        "create_game" | "update_game" | "create_game_config" | "update_game_config"
        | "deploy_game_config" | "delete_game" | "delete_game_config" | "delete_deployment"
        | "add_host" | "revoke_host" | "create_token" | "list_tokens" | "revoke_token"
        | "delete_backup" => Role::Admin,
        _ => Role::Admin,
    })
}

/// Whether an enrolled host may make this call (for its own server only: the handler checks
/// the server): registering, and listing its sessions to reconcile.
pub fn host_may(rpc: &str) -> bool {
    matches!(rpc, "register_server" | "list_sessions")
}

/// `who_am_i` answers any valid token, whatever its role.
pub fn any_role(rpc: &str) -> bool {
    rpc == "who_am_i"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_for_viewers_actions_for_operators_and_changes_for_admins() {
        assert_eq!(needed_role("get_session"), Some(Role::Viewer));
        assert_eq!(needed_role("start_session"), Some(Role::Operator));
        assert_eq!(needed_role("create_game_config"), Some(Role::Admin));
        assert_eq!(needed_role("register_server"), Some(Role::Host));
        assert_eq!(needed_role("enroll_host"), None);
        assert_eq!(needed_role("some_new_rpc"), Some(Role::Admin));
        assert!(host_may("list_sessions") && !host_may("start_session"));
    }
}
