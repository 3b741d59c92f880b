//! Drawing the UI's state into a ratatui frame: a tab bar, the table of the tab shown, the footer
//! message or question, and a key help line.
//!
//! Drawing reads the state and nothing else (only the table scroll offsets are written back), so
//! the same code renders into the real terminal and into `TestBackend` in tests.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Tabs, Wrap};

use super::app::{
    ACTIVE_HEADER, App, Mode, Notice, RESERVED_HEADER, Tab, active_cells, reserved_cells,
};
use crate::ports::Status;

/// The widest a sized column gets before it is cut.
const MAX_COLUMN: usize = 28;

/// The most lines the footer message may wrap onto.
const MESSAGE_LINES: usize = 3;

/// Draws the whole UI into `frame`.
pub fn draw(app: &mut App, frame: &mut Frame) {
    let message = message_line(app);
    let width = usize::from(frame.area().width.max(1));
    let text: String = message.spans.iter().map(|s| s.content.as_ref()).collect();
    let lines = wrapped_lines(&text, width).clamp(1, MESSAGE_LINES);
    let [top, body, message_area, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(u16::try_from(lines).unwrap_or(1)),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_top(app, frame, top);
    match app.tab() {
        Tab::Reserved => draw_reserved(app, frame, body),
        Tab::Active => draw_active(app, frame, body),
    }
    frame.render_widget(
        Paragraph::new(message).wrap(Wrap { trim: false }),
        message_area,
    );
    draw_help(app, frame, help);
}

/// How many lines `text` takes when wrapped at spaces into `width` columns (as `Wrap` does).
fn wrapped_lines(text: &str, width: usize) -> usize {
    let mut lines = 1;
    let mut used = 0;
    for word in text.split(' ').map(|w| w.chars().count()) {
        let needed = if used == 0 { word } else { used + 1 + word };
        if needed <= width {
            used = needed;
        } else {
            // A word longer than the line is broken across lines.
            lines += usize::from(used > 0) + word.saturating_sub(1) / width;
            used = match word % width {
                0 if word > 0 => width,
                rest => rest,
            };
        }
    }
    lines
}

fn draw_top(app: &App, frame: &mut Frame, area: Rect) {
    let mut info = Vec::new();
    if !app.filter.is_empty() || matches!(app.mode, Mode::Filter) {
        info.push(format!("filter: {}", app.filter));
    }
    match &app.refreshed {
        Some(at) => info.push(format!("updated {at}, every {:?}", app.interval)),
        None => info.push("not read yet".into()),
    }
    let info = format!("{} ", info.join("  |  "));
    let width = u16::try_from(info.chars().count()).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(width)]).areas(area);
    let titles = [
        format!(" Reserved ({}) ", app.reserved_rows().len()),
        format!(" Active ({}) ", app.active_rows().len()),
    ];
    let tabs = Tabs::new(titles)
        .select(app.tab().index())
        .style(Style::new().fg(Color::Gray))
        .highlight_style(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        )
        .divider("|")
        .padding("", "");
    frame.render_widget(
        Line::styled(" portman ", Style::new().add_modifier(Modifier::BOLD)),
        left,
    );
    let [_, tabs_area] =
        Layout::horizontal([Constraint::Length(10), Constraint::Min(1)]).areas(left);
    frame.render_widget(tabs, tabs_area);
    frame.render_widget(
        Paragraph::new(info).style(Style::new().fg(Color::DarkGray)),
        right,
    );
}

fn draw_reserved(app: &mut App, frame: &mut Frame, area: Rect) {
    let rows: Vec<[String; 7]> = app
        .reserved_rows()
        .into_iter()
        .map(reserved_cells)
        .collect();
    if rows.is_empty() {
        let text = if app.filter.is_empty() {
            "No reserved ports. Reserve one with `portman reserve <port> -n <project>`."
        } else {
            "No reservation matches the filter."
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let widths = [
        Constraint::Length(5),
        Constraint::Length(8),
        sized(&rows, 2, 7),
        sized(&rows, 3, 11),
        sized(&rows, 4, 12),
        Constraint::Fill(2),
        Constraint::Fill(1),
    ];
    let table_rows = rows.into_iter().map(|cells| {
        let status = cells[1].parse::<Status>().ok();
        Row::new(cells.into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::from(text);
            match (i, status) {
                (1, Some(Status::InUse)) => cell.style(Style::new().fg(Color::Yellow)),
                (1, Some(Status::Reserved)) => cell.style(Style::new().fg(Color::Green)),
                (0, _) => cell.style(Style::new().add_modifier(Modifier::BOLD)),
                _ => cell,
            }
        }))
    });
    render_table(app, frame, area, table_rows, &RESERVED_HEADER, &widths);
}

fn draw_active(app: &mut App, frame: &mut Frame, area: Rect) {
    let rows: Vec<[String; 7]> = app
        .active_rows()
        .into_iter()
        .map(|s| active_cells(s, app.project_of(s.port)))
        .collect();
    if rows.is_empty() {
        let text = if app.filter.is_empty() {
            "Nothing listens on any port (or the socket tables could not be read)."
        } else {
            "No socket matches the filter."
        };
        frame.render_widget(Paragraph::new(text), area);
        return;
    }
    let widths = [
        Constraint::Length(5),
        sized(&rows, 1, 7),
        Constraint::Length(5),
        sized(&rows, 3, 4),
        sized(&rows, 4, 7),
        sized(&rows, 5, 4),
        Constraint::Fill(1),
    ];
    let table_rows = rows.into_iter().map(|cells| {
        let reserved = !cells[6].is_empty();
        Row::new(cells.into_iter().enumerate().map(|(i, text)| {
            let cell = Cell::from(text);
            match i {
                2 => cell.style(Style::new().add_modifier(Modifier::BOLD)),
                6 if reserved => cell.style(Style::new().fg(Color::Cyan)),
                _ => cell,
            }
        }))
    });
    render_table(app, frame, area, table_rows, &ACTIVE_HEADER, &widths);
}

/// A column as wide as its widest cell (or its title), up to [`MAX_COLUMN`].
fn sized(rows: &[[String; 7]], column: usize, title: usize) -> Constraint {
    let widest = rows
        .iter()
        .map(|r| r[column].chars().count())
        .max()
        .unwrap_or(0)
        .max(title)
        .min(MAX_COLUMN);
    Constraint::Length(u16::try_from(widest).unwrap_or(u16::MAX))
}

fn render_table<'a>(
    app: &mut App,
    frame: &mut Frame,
    area: Rect,
    rows: impl IntoIterator<Item = Row<'a>>,
    header: &[&'a str],
    widths: &[Constraint],
) {
    let header = Row::new(header.iter().copied()).style(
        Style::new()
            .add_modifier(Modifier::BOLD)
            .add_modifier(Modifier::UNDERLINED),
    );
    let table = Table::new(rows, widths.iter().copied())
        .header(header)
        .column_spacing(2)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let selected = app.selected();
    let state = &mut app.tables[app.tab.index()];
    state.select(Some(selected));
    frame.render_stateful_widget(table, area, state);
}

/// The question, the filter being typed, or the last message.
fn message_line(app: &App) -> Line<'static> {
    if let Some(prompt) = app.prompt() {
        Line::from(Span::styled(
            prompt,
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ))
    } else if matches!(app.mode, Mode::Filter) {
        Line::from(vec![
            Span::styled("/", Style::new().fg(Color::Cyan)),
            Span::raw(app.filter.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
        ])
    } else {
        match app.notice() {
            Some(Notice::Info(text)) => Line::from(text.clone()),
            Some(Notice::Error(text)) => {
                Line::from(Span::styled(text.clone(), Style::new().fg(Color::Red)))
            }
            Some(Notice::RefreshError(text)) => Line::from(Span::styled(
                format!("Refresh failed (rows may be out of date): {text}"),
                Style::new().fg(Color::Red),
            )),
            None => Line::default(),
        }
    }
}

fn draw_help(app: &App, frame: &mut Frame, area: Rect) {
    let keys: &[(&str, &str)] = match app.mode {
        Mode::ConfirmRelease { .. } | Mode::ConfirmKill { .. } => {
            &[("y", "confirm"), ("any other key", "cancel")]
        }
        Mode::Filter => &[("type", "filter"), ("Enter", "keep"), ("Esc", "clear")],
        Mode::Normal => &[
            ("↑↓/jk", "move"),
            ("Tab", "switch table"),
            ("r", "refresh"),
            ("d/Del", "release"),
            ("K", "kill"),
            ("/", "filter"),
            ("q/Esc", "quit"),
        ],
    };
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(
            format!(" {key} "),
            Style::new().fg(Color::Black).bg(Color::DarkGray),
        ));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;

    use super::super::app::tests::{key, sample};
    use super::*;

    fn screen(app: &mut App, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(app, frame)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_reserved_table_shows_every_port_and_project() {
        let text = screen(&mut sample(), 100, 20);
        for expected in [
            "3000",
            "8000",
            "9000",
            "web",
            "api",
            "docs",
            "4242 python3",
            "in-use",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
        assert!(text.contains("tcp 127.0.0.1"), "{text}");
        assert!(
            text.contains("Reserved (3)") && text.contains("Active (2)"),
            "{text}"
        );
        assert!(text.contains("q/Esc"), "key help shown\n{text}");
    }

    #[test]
    fn the_active_table_shows_sockets_with_processes_and_projects() {
        let mut app = sample();
        app.handle_key(key(KeyCode::Tab));
        let text = screen(&mut app, 100, 20);
        for expected in [
            "5432", "postgres", "77", "8000", "python3", "4242", "api", "dev",
        ] {
            assert!(text.contains(expected), "{expected} missing from\n{text}");
        }
    }

    #[test]
    fn the_footer_shows_the_question_and_errors() {
        let mut app = sample();
        app.handle_key(key(KeyCode::Char('d')));
        let text = screen(&mut app, 100, 20);
        assert!(
            text.contains("Release port 3000 (project web)? [y/N]"),
            "{text}"
        );
        app.handle_key(key(KeyCode::Char('n')));
        app.handle_key(key(KeyCode::Char('K')));
        let text = screen(&mut app, 100, 20);
        assert!(text.contains("Nothing listens on port 3000."), "{text}");
    }

    #[test]
    fn wrapped_lines_counts_like_word_wrapping() {
        assert_eq!(wrapped_lines("", 10), 1);
        assert_eq!(wrapped_lines("aaaa bbbb", 9), 1);
        assert_eq!(wrapped_lines("aaaa bbbbb", 9), 2);
        assert_eq!(wrapped_lines("aaaaaaaaaaaaaaaaaaaa", 10), 2);
        assert_eq!(wrapped_lines("a aaaaaaaaaaaaaaaaaaaaa", 10), 4);
    }

    #[test]
    fn a_long_message_wraps_instead_of_being_cut() {
        let mut app = sample();
        let long = format!("{} the end", "word ".repeat(30));
        app.set_notice(Notice::Error(long));
        let text = screen(&mut app, 60, 20);
        assert!(text.contains("the end"), "{text}");
        assert!(text.contains("switch table"), "the key help stays\n{text}");
    }

    #[test]
    fn a_tiny_terminal_still_draws_without_panicking() {
        let mut app = sample();
        screen(&mut app, 10, 3);
        screen(&mut app, 1, 1);
    }
}
