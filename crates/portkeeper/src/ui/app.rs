//! The state of the terminal UI and what each key does to it, with no terminal or database in
//! sight.
//!
//! Keys only change this state and name an [`Action`] for the runner to carry out (release, kill,
//! refresh, quit), so tests can drive the whole UI key by key and check what it would do without a
//! terminal, a database or a process to signal. Releasing and killing always pass through a y/n
//! question first, and a kill question names exactly the processes that would be signalled.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::widgets::TableState;

use crate::kill::{self, Target};
use crate::live::Observed;
use crate::port::Port;
use crate::sockets::{Proto, Snapshot, Socket};

/// How far PageUp and PageDown move the selection.
const PAGE: isize = 10;

/// Which table is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// The reservations, with their live status.
    Reserved,
    /// Every listening TCP socket and bound UDP socket on the machine.
    Active,
}

impl Tab {
    /// Its position in the tab bar.
    pub fn index(self) -> usize {
        match self {
            Tab::Reserved => 0,
            Tab::Active => 1,
        }
    }

    fn other(self) -> Tab {
        match self {
            Tab::Reserved => Tab::Active,
            Tab::Active => Tab::Reserved,
        }
    }
}

/// What the runner must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Read the database and the sockets again now.
    Refresh,
    /// Release this reservation (confirmed by the user).
    Release(Port),
    /// Signal the listeners on this port; the user confirmed these pids, so anything else found
    /// listening there by then must not be signalled.
    Kill {
        /// The port.
        port: Port,
        /// The pids shown in the question.
        pids: Vec<u32>,
    },
}

/// What keys mean at the moment.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Moving around and starting actions.
    Normal,
    /// Typing the filter text.
    Filter,
    /// Waiting for y/n before releasing `port`.
    ConfirmRelease {
        /// The port.
        port: Port,
        /// Its project.
        project: String,
        /// `pid 42 (node)` for processes still listening on it, which release does not stop.
        listeners: Vec<String>,
    },
    /// Waiting for y/n before signalling `targets`.
    ConfirmKill {
        /// The port.
        port: Port,
        /// What would be signalled.
        targets: Vec<Target>,
    },
}

/// The message in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The outcome of an action.
    Info(String),
    /// Why an action failed or was refused.
    Error(String),
    /// Why the last refresh failed; cleared by the next good one.
    RefreshError(String),
}

/// Everything the UI shows, and the selection.
#[derive(Debug)]
pub struct App {
    pub(super) reserved: Vec<Observed>,
    pub(super) snapshot: Snapshot,
    /// Project holding each reserved port.
    projects: BTreeMap<u16, String>,
    pub(super) tab: Tab,
    pub(super) mode: Mode,
    pub(super) filter: String,
    pub(super) notice: Option<Notice>,
    /// Selected row of each tab, an index into its visible (filtered) rows.
    selected: [usize; 2],
    /// Scroll positions, kept between frames.
    pub(super) tables: [TableState; 2],
    /// When the data was last read (`HH:MM:SS UTC`).
    pub(super) refreshed: Option<String>,
    pub(super) interval: Duration,
}

/// What identifies a row across refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RowKey {
    Reserved(Port),
    Active(u16, Proto, IpAddr),
}

impl App {
    /// An empty UI that refreshes every `interval`.
    pub fn new(interval: Duration) -> App {
        App {
            reserved: Vec::new(),
            snapshot: Snapshot::default(),
            projects: BTreeMap::new(),
            tab: Tab::Reserved,
            mode: Mode::Normal,
            filter: String::new(),
            notice: None,
            selected: [0, 0],
            tables: [TableState::default(), TableState::default()],
            refreshed: None,
            interval,
        }
    }

    /// Replaces the data with a fresh read taken at `at`, keeping each tab's selection on the same
    /// port where that row is still there.
    pub fn set_data(&mut self, reserved: Vec<Observed>, snapshot: Snapshot, at: String) {
        let keys = [self.key_of(Tab::Reserved), self.key_of(Tab::Active)];
        self.projects = reserved
            .iter()
            .map(|o| {
                (
                    o.reservation.number.get(),
                    o.reservation.project_name.clone(),
                )
            })
            .collect();
        self.reserved = reserved;
        self.snapshot = snapshot;
        self.refreshed = Some(at);
        for (tab, key) in [Tab::Reserved, Tab::Active].into_iter().zip(keys) {
            if let Some(key) = key
                && let Some(i) = self.position_of(tab, &key)
            {
                self.selected[tab.index()] = i;
            }
        }
        self.clamp();
        if matches!(self.notice, Some(Notice::RefreshError(_))) {
            self.notice = None;
        }
    }

    /// Shows why a refresh failed; the rows shown stay as they were.
    pub fn refresh_failed(&mut self, message: String) {
        self.notice = Some(Notice::RefreshError(message));
    }

    /// Sets the footer message.
    pub fn set_notice(&mut self, notice: Notice) {
        self.notice = Some(notice);
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.tab
    }

    /// What keys mean now.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The footer message, if any.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// The selected row of the tab shown, as an index into its visible rows.
    pub fn selected(&self) -> usize {
        self.selected[self.tab.index()]
    }

    /// The project holding `port`, if it is reserved.
    pub fn project_of(&self, port: u16) -> Option<&str> {
        self.projects.get(&port).map(String::as_str)
    }

    /// The reservations that match the filter, in port order.
    pub fn reserved_rows(&self) -> Vec<&Observed> {
        self.reserved
            .iter()
            .filter(|o| self.matches(&reserved_cells(o)))
            .collect()
    }

    /// The sockets that match the filter, in port order.
    pub fn active_rows(&self) -> Vec<&Socket> {
        self.snapshot
            .sockets()
            .iter()
            .filter(|s| self.matches(&active_cells(s, self.project_of(s.port))))
            .collect()
    }

    /// The y/n question being asked, if any.
    pub fn prompt(&self) -> Option<String> {
        match &self.mode {
            Mode::ConfirmRelease {
                port,
                project,
                listeners,
            } => {
                let mut text = format!("Release port {port} (project {project})?");
                if !listeners.is_empty() {
                    text.push_str(&format!(" {} keeps running.", listeners.join(", ")));
                }
                Some(format!("{text} [y/N]"))
            }
            Mode::ConfirmKill { port, targets } => {
                let who = targets
                    .iter()
                    .map(|t| format!("pid {} ({}, {})", t.pid, t.process, t.sockets.join(" ")))
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!("Kill port {port}: send TERM to {who}? [y/N]"))
            }
            Mode::Normal | Mode::Filter => None,
        }
    }

    /// Applies one key press and says what the runner must do.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c' | 'C'))
        {
            return Action::Quit;
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key),
            Mode::Filter => {
                self.filter_key(key);
                Action::None
            }
            Mode::ConfirmRelease { port, .. } => {
                if is_yes(key) {
                    Action::Release(port)
                } else {
                    self.notice = Some(Notice::Info(format!(
                        "Kept the reservation of port {port}."
                    )));
                    Action::None
                }
            }
            Mode::ConfirmKill { port, targets } => {
                if is_yes(key) {
                    Action::Kill {
                        port,
                        pids: targets.iter().map(|t| t.pid).collect(),
                    }
                } else {
                    self.notice = Some(Notice::Info(format!("Nothing signalled on port {port}.")));
                    Action::None
                }
            }
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if self.filter.is_empty() => return Action::Quit,
            KeyCode::Esc => {
                self.filter.clear();
                self.clamp();
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-PAGE),
            KeyCode::PageDown => self.move_by(PAGE),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX),
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right => {
                self.tab = self.tab.other();
                self.clamp();
            }
            KeyCode::Char('r') | KeyCode::F(5) => return Action::Refresh,
            KeyCode::Char('d') | KeyCode::Delete => self.ask_release(),
            KeyCode::Char('K') => self.ask_kill(),
            KeyCode::Char('/') => self.mode = Mode::Filter,
            _ => {}
        }
        Action::None
    }

    fn filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => return,
            KeyCode::Esc => {
                self.filter.clear();
                self.clamp();
                return;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c);
            }
            _ => {}
        }
        self.mode = Mode::Filter;
        self.clamp();
    }

    /// The port of the selected row, whichever tab.
    fn selected_port(&self) -> Option<u16> {
        match self.tab {
            Tab::Reserved => self
                .reserved_rows()
                .get(self.selected())
                .map(|o| o.reservation.number.get()),
            Tab::Active => self.active_rows().get(self.selected()).map(|s| s.port),
        }
    }

    fn ask_release(&mut self) {
        let Some(number) = self.selected_port() else {
            self.notice = Some(Notice::Error("No row selected.".into()));
            return;
        };
        let Some(row) = self
            .reserved
            .iter()
            .find(|o| o.reservation.number.get() == number)
        else {
            self.notice = Some(Notice::Error(format!(
                "Port {number} is not reserved; there is nothing to release."
            )));
            return;
        };
        let mut listeners: Vec<String> = Vec::new();
        for owner in row.listeners.iter().flat_map(|s| &s.owners) {
            let text = format!("pid {} ({})", owner.pid, owner.process);
            if !listeners.contains(&text) {
                listeners.push(text);
            }
        }
        self.mode = Mode::ConfirmRelease {
            port: row.reservation.number,
            project: row.reservation.project_name.clone(),
            listeners,
        };
    }

    fn ask_kill(&mut self) {
        let Some(port) = self.selected_port().and_then(|n| Port::new(n.into())) else {
            self.notice = Some(Notice::Error("No row selected.".into()));
            return;
        };
        match kill::targets(&self.snapshot, port, None) {
            Err(e) => self.notice = Some(Notice::Error(e.to_string())),
            Ok(targets) if targets.is_empty() => {
                let hidden = self
                    .reserved
                    .iter()
                    .any(|o| o.reservation.number == port && o.hidden_holder);
                self.notice = Some(Notice::Error(if hidden {
                    format!(
                        "Port {port} is taken by a process this user cannot see; nothing to signal."
                    )
                } else {
                    format!("Nothing listens on port {port}.")
                }));
            }
            Ok(targets) => self.mode = Mode::ConfirmKill { port, targets },
        }
    }

    fn move_by(&mut self, delta: isize) {
        let len = self.visible_len();
        let i = &mut self.selected[self.tab.index()];
        *i = i.saturating_add_signed(delta).min(len.saturating_sub(1));
    }

    /// Keeps both selections inside their visible rows.
    fn clamp(&mut self) {
        let lens = [self.reserved_rows().len(), self.active_rows().len()];
        for (i, len) in self.selected.iter_mut().zip(lens) {
            *i = (*i).min(len.saturating_sub(1));
        }
    }

    fn visible_len(&self) -> usize {
        match self.tab {
            Tab::Reserved => self.reserved_rows().len(),
            Tab::Active => self.active_rows().len(),
        }
    }

    fn key_of(&self, tab: Tab) -> Option<RowKey> {
        let i = self.selected[tab.index()];
        match tab {
            Tab::Reserved => self
                .reserved_rows()
                .get(i)
                .map(|o| RowKey::Reserved(o.reservation.number)),
            Tab::Active => self
                .active_rows()
                .get(i)
                .map(|s| RowKey::Active(s.port, s.proto, s.address)),
        }
    }

    fn position_of(&self, tab: Tab, key: &RowKey) -> Option<usize> {
        match tab {
            Tab::Reserved => self
                .reserved_rows()
                .iter()
                .position(|o| RowKey::Reserved(o.reservation.number) == *key),
            Tab::Active => self
                .active_rows()
                .iter()
                .position(|s| RowKey::Active(s.port, s.proto, s.address) == *key),
        }
    }

    fn matches(&self, cells: &[String]) -> bool {
        let needle = self.filter.trim().to_lowercase();
        needle.is_empty() || cells.iter().any(|c| c.to_lowercase().contains(&needle))
    }
}

fn is_yes(key: KeyEvent) -> bool {
    matches!(key.code, KeyCode::Char('y' | 'Y'))
}

/// The reserved table's columns, as shown and as the filter sees them.
pub const RESERVED_HEADER: [&str; 7] = [
    "Port",
    "Status",
    "Project",
    "PID/Process",
    "Listening on",
    "Description",
    "Tags",
];

/// The active table's columns.
pub const ACTIVE_HEADER: [&str; 7] = [
    "Proto", "Address", "Port", "PIDs", "Process", "User", "Project",
];

/// The cells of a reservation's row.
pub fn reserved_cells(o: &Observed) -> [String; 7] {
    let r = &o.reservation;
    let mut owners: Vec<(u32, &str)> = Vec::new();
    for owner in o.listeners.iter().flat_map(|s| &s.owners) {
        if !owners.iter().any(|(pid, _)| *pid == owner.pid) {
            owners.push((owner.pid, &owner.process));
        }
    }
    let process = match (owners.first(), r.pid) {
        (Some((pid, name)), _) if owners.len() > 1 => {
            format!("{pid} {name} +{}", owners.len() - 1)
        }
        (Some((pid, name)), _) => format!("{pid} {name}"),
        (None, Some(pid)) => format!("{pid} {}", r.process_name.as_deref().unwrap_or("")),
        (None, None) if o.hidden_holder => "not visible".into(),
        (None, None) if !o.listeners.is_empty() => "not visible".into(),
        (None, None) => String::new(),
    };
    let mut addresses: Vec<String> = Vec::new();
    for s in &o.listeners {
        let text = format!("{} {}", s.proto, s.address);
        if !addresses.contains(&text) {
            addresses.push(text);
        }
    }
    if addresses.is_empty() && o.hidden_holder {
        addresses.push("(bound out of sight)".into());
    }
    [
        r.number.to_string(),
        r.status.to_string(),
        r.project_name.clone(),
        process.trim_end().to_string(),
        addresses.join(", "),
        r.description.clone().unwrap_or_default(),
        r.tags.join(", "),
    ]
}

/// The cells of a socket's row; `project` holds its port, if reserved.
pub fn active_cells(s: &Socket, project: Option<&str>) -> [String; 7] {
    let pids = s
        .owners
        .iter()
        .map(|o| o.pid.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut names: Vec<&str> = Vec::new();
    for o in &s.owners {
        if !names.contains(&o.process.as_str()) {
            names.push(&o.process);
        }
    }
    [
        s.proto.to_string(),
        s.address.to_string(),
        s.port.to_string(),
        if s.owners.is_empty() {
            "?".into()
        } else {
            pids
        },
        if s.owners.is_empty() {
            "(not visible)".into()
        } else {
            names.join(",")
        },
        s.user.clone(),
        project.unwrap_or_default().to_string(),
    ]
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ports::{Reservation, Status};
    use crate::sockets::{Family, Owner};

    pub fn reservation(port: u16, project: &str, status: Status) -> Reservation {
        Reservation {
            number: Port::new(port.into()).unwrap(),
            project_name: project.into(),
            description: Some(format!("{project} dev server")),
            status,
            pid: None,
            process_name: None,
            reserved_at: "2024-01-20 10:30:00".into(),
            last_seen_at: None,
            updated_at: "2024-01-20 10:30:00".into(),
            auto_release: false,
            tags: vec!["web".into()],
            metadata: serde_json::Map::new(),
        }
    }

    pub fn socket(port: u16, owners: &[(u32, &str)]) -> Socket {
        Socket {
            proto: Proto::Tcp,
            family: Family::Ipv4,
            address: IpAddr::from([127, 0, 0, 1]),
            port,
            state: "LISTEN",
            inode: u64::from(port),
            uid: 1000,
            user: "dev".into(),
            owners: owners
                .iter()
                .map(|(pid, name)| Owner {
                    pid: *pid,
                    process: (*name).into(),
                })
                .collect(),
        }
    }

    /// Reserved 3000 (web, idle), 8000 (api, python3 pid 4242 listening), 9000 (docs, idle);
    /// sockets on 8000 and on the unreserved 5432 (postgres pid 77).
    pub fn sample() -> App {
        let api_socket = socket(8000, &[(4242, "python3")]);
        let reserved = vec![
            Observed {
                reservation: reservation(3000, "web", Status::Reserved),
                listeners: vec![],
                hidden_holder: false,
            },
            Observed {
                reservation: reservation(8000, "api", Status::InUse),
                listeners: vec![api_socket.clone()],
                hidden_holder: false,
            },
            Observed {
                reservation: reservation(9000, "docs", Status::Reserved),
                listeners: vec![],
                hidden_holder: false,
            },
        ];
        let snapshot = Snapshot::from_sockets(vec![api_socket, socket(5432, &[(77, "postgres")])]);
        let mut app = App::new(Duration::from_secs(2));
        app.set_data(reserved, snapshot, "10:30:00 UTC".into());
        app
    }

    pub fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn press(app: &mut App, keys: &[KeyCode]) -> Action {
        keys.iter()
            .map(|k| app.handle_key(key(*k)))
            .last()
            .unwrap_or(Action::None)
    }

    fn selected_port(app: &App) -> Option<u16> {
        app.selected_port()
    }

    #[test]
    fn selection_moves_with_arrows_and_jk_and_stops_at_both_ends() {
        let mut app = sample();
        assert_eq!(selected_port(&app), Some(3000));
        press(&mut app, &[KeyCode::Up]);
        assert_eq!(selected_port(&app), Some(3000), "clamped at the top");
        press(&mut app, &[KeyCode::Down]);
        assert_eq!(selected_port(&app), Some(8000));
        press(
            &mut app,
            &[KeyCode::Char('j'), KeyCode::Char('j'), KeyCode::Down],
        );
        assert_eq!(selected_port(&app), Some(9000), "clamped at the bottom");
        press(&mut app, &[KeyCode::Char('k')]);
        assert_eq!(selected_port(&app), Some(8000));
        press(&mut app, &[KeyCode::End]);
        assert_eq!(app.selected(), 2);
        press(&mut app, &[KeyCode::Home]);
        assert_eq!(app.selected(), 0);
    }

    #[test]
    fn tab_switches_tables_and_each_keeps_its_own_selection() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Down, KeyCode::Down]);
        press(&mut app, &[KeyCode::Tab]);
        assert_eq!(app.tab(), Tab::Active);
        assert_eq!(
            selected_port(&app),
            Some(5432),
            "the active table starts at its top"
        );
        press(&mut app, &[KeyCode::Down]);
        assert_eq!(selected_port(&app), Some(8000));
        press(&mut app, &[KeyCode::Tab]);
        assert_eq!(app.tab(), Tab::Reserved);
        assert_eq!(selected_port(&app), Some(9000));
    }

    #[test]
    fn an_empty_table_has_no_selection_to_act_on() {
        let mut app = App::new(Duration::from_secs(2));
        press(&mut app, &[KeyCode::Down, KeyCode::Up]);
        assert_eq!(app.selected(), 0);
        assert_eq!(press(&mut app, &[KeyCode::Char('d')]), Action::None);
        assert!(matches!(app.mode(), Mode::Normal));
        assert!(matches!(app.notice(), Some(Notice::Error(m)) if m.contains("No row")));
    }

    #[test]
    fn release_asks_for_confirmation_and_only_y_confirms() {
        let mut app = sample();
        for refusal in [
            KeyCode::Char('n'),
            KeyCode::Char('x'),
            KeyCode::Enter,
            KeyCode::Esc,
        ] {
            assert_eq!(press(&mut app, &[KeyCode::Char('d')]), Action::None);
            assert!(matches!(app.mode(), Mode::ConfirmRelease { .. }));
            let prompt = app.prompt().unwrap();
            assert!(
                prompt.contains("port 3000") && prompt.contains("web"),
                "{prompt}"
            );
            assert_eq!(press(&mut app, &[refusal]), Action::None, "{refusal:?}");
            assert!(matches!(app.mode(), Mode::Normal));
            assert!(matches!(app.notice(), Some(Notice::Info(m)) if m.contains("Kept")));
        }
        press(&mut app, &[KeyCode::Delete]);
        let port = Port::new(3000).unwrap();
        assert_eq!(
            press(&mut app, &[KeyCode::Char('y')]),
            Action::Release(port)
        );
        assert!(matches!(app.mode(), Mode::Normal));
    }

    #[test]
    fn release_of_a_port_in_use_warns_that_its_listener_keeps_running() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Down, KeyCode::Char('d')]);
        let prompt = app.prompt().unwrap();
        assert!(
            prompt.contains("pid 4242 (python3) keeps running"),
            "{prompt}"
        );
    }

    #[test]
    fn release_from_the_active_table_needs_a_reserved_port() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Tab, KeyCode::Char('d')]);
        assert!(matches!(app.mode(), Mode::Normal), "5432 is not reserved");
        assert!(matches!(app.notice(), Some(Notice::Error(m)) if m.contains("not reserved")));
        press(&mut app, &[KeyCode::Down, KeyCode::Char('d')]);
        let port = Port::new(8000).unwrap();
        assert_eq!(
            press(&mut app, &[KeyCode::Char('Y')]),
            Action::Release(port)
        );
    }

    #[test]
    fn kill_names_the_pids_and_processes_and_only_y_confirms() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Down, KeyCode::Char('K')]);
        let prompt = app.prompt().unwrap();
        assert!(prompt.contains("pid 4242 (python3"), "{prompt}");
        assert!(prompt.contains("127.0.0.1:8000"), "{prompt}");
        assert_eq!(press(&mut app, &[KeyCode::Char('n')]), Action::None);
        press(&mut app, &[KeyCode::Char('K')]);
        let action = press(&mut app, &[KeyCode::Char('y')]);
        let port = Port::new(8000).unwrap();
        assert_eq!(
            action,
            Action::Kill {
                port,
                pids: vec![4242]
            }
        );
    }

    #[test]
    fn kill_on_a_port_nobody_listens_on_says_so_without_asking() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Char('K')]);
        assert!(matches!(app.mode(), Mode::Normal));
        assert!(matches!(app.notice(), Some(Notice::Error(m)) if m.contains("Nothing listens")));
    }

    #[test]
    fn kill_refuses_pid_1_and_invisible_owners_before_asking() {
        let mut app = App::new(Duration::from_secs(2));
        let snapshot = Snapshot::from_sockets(vec![socket(22, &[(1, "systemd")]), socket(25, &[])]);
        app.set_data(Vec::new(), snapshot, "now".into());
        press(&mut app, &[KeyCode::Tab, KeyCode::Char('K')]);
        assert!(matches!(app.mode(), Mode::Normal));
        assert!(matches!(app.notice(), Some(Notice::Error(m)) if m.contains("PID 1")));
        press(&mut app, &[KeyCode::Down, KeyCode::Char('K')]);
        assert!(matches!(app.mode(), Mode::Normal));
        assert!(matches!(app.notice(), Some(Notice::Error(m)) if m.contains("cannot see")));
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_ctrl_c_works_while_asking() {
        assert_eq!(press(&mut sample(), &[KeyCode::Char('q')]), Action::Quit);
        assert_eq!(press(&mut sample(), &[KeyCode::Esc]), Action::Quit);
        let mut app = sample();
        press(&mut app, &[KeyCode::Char('d')]);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.handle_key(ctrl_c), Action::Quit);
    }

    #[test]
    fn r_asks_for_a_refresh() {
        assert_eq!(press(&mut sample(), &[KeyCode::Char('r')]), Action::Refresh);
    }

    #[test]
    fn filter_narrows_both_tables_and_esc_clears_it() {
        let mut app = sample();
        press(
            &mut app,
            &[KeyCode::Char('/'), KeyCode::Char('A'), KeyCode::Char('p')],
        );
        assert!(matches!(app.mode(), Mode::Filter));
        assert_eq!(
            press(&mut app, &[KeyCode::Char('q')]),
            Action::None,
            "q is text here"
        );
        press(&mut app, &[KeyCode::Backspace, KeyCode::Enter]);
        assert!(matches!(app.mode(), Mode::Normal));
        let ports: Vec<u16> = app
            .reserved_rows()
            .iter()
            .map(|o| o.reservation.number.get())
            .collect();
        assert_eq!(ports, [8000], "'ap' matches project api only");
        let active: Vec<u16> = app.active_rows().iter().map(|s| s.port).collect();
        assert_eq!(active, [8000], "the socket of project api");
        assert_eq!(
            press(&mut app, &[KeyCode::Esc]),
            Action::None,
            "Esc clears first"
        );
        assert_eq!(app.reserved_rows().len(), 3);
        assert_eq!(press(&mut app, &[KeyCode::Esc]), Action::Quit);
    }

    #[test]
    fn selection_stays_on_the_same_port_across_a_refresh() {
        let mut app = sample();
        press(&mut app, &[KeyCode::Down]);
        assert_eq!(selected_port(&app), Some(8000));
        // 3000 was released elsewhere: 8000 moves up a row but stays selected.
        let mut reserved = app.reserved.clone();
        reserved.remove(0);
        let snapshot = app.snapshot.clone();
        app.set_data(reserved, snapshot, "10:30:02 UTC".into());
        assert_eq!(selected_port(&app), Some(8000));
        app.set_data(Vec::new(), Snapshot::default(), "10:30:04 UTC".into());
        assert_eq!(app.selected(), 0);
    }

    #[test]
    fn a_good_refresh_clears_the_last_refresh_error_but_not_an_action_result() {
        let mut app = sample();
        app.refresh_failed("busy".into());
        app.set_data(Vec::new(), Snapshot::default(), "t".into());
        assert_eq!(app.notice(), None);
        app.set_notice(Notice::Info("Released port 3000.".into()));
        app.set_data(Vec::new(), Snapshot::default(), "t".into());
        assert!(app.notice().is_some());
    }
}
