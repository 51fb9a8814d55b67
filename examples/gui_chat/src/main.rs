//! `gui_chat`: a desktop chat client with a real GUI toolkit (eframe/egui).
//!
//! Its `WebSocket` is attached to an `EventPump` that the UI thread pumps
//! each frame, so every listener runs on the UI thread and changes the UI's
//! state (`Rc<RefCell<..>>`, not `Send`) directly; the pump's waker asks
//! egui for a repaint when an event arrives. It sends a bearer token with
//! its upgrade request, shows the connection's state, and reconnects two
//! seconds after the connection ends.
//!
//! ```text
//! gui_chat [--token TOKEN] [--say TEXT]... [--self-test] [URL]   (default ws://127.0.0.1:9001/)
//! ```
//!
//! `--say TEXT` types TEXT and presses Send once connected (repeatable).
//! `--self-test` connects, types a message into the input field and
//! presses Send through the UI's state, waits for the echo in the message
//! list, prints `SELF-TEST OK`, and exits 0 (1 after 30 s without it).

use airws::{Event, EventPump, IOErrorEvent, WebSocket, WebSocketEvent};
use eframe::egui;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

const RECONNECT_AFTER: Duration = Duration::from_secs(2);
const SELF_TEST_LIMIT: Duration = Duration::from_secs(30);
const SELF_TEST_MESSAGE: &str = "hello from the UI thread, héllo wörld";

struct Options {
    url: String,
    token: Option<String>,
    say: Vec<String>,
    self_test: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        url: "ws://127.0.0.1:9001/".to_owned(),
        token: None,
        say: Vec::new(),
        self_test: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--token" => options.token = Some(args.next().ok_or("--token needs a value")?),
            "--say" => options.say.push(args.next().ok_or("--say needs a value")?),
            "--self-test" => options.self_test = true,
            "-h" | "--help" => {
                return Err(
                    "usage: gui_chat [--token TOKEN] [--say TEXT]... [--self-test] [URL]"
                        .to_owned(),
                )
            }
            url if !url.starts_with('-') => options.url = url.to_owned(),
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    Ok(options)
}

/// The connection's state, as the UI shows it.
#[derive(Clone, Debug, PartialEq)]
enum Status {
    Connecting,
    Open,
    Closed { code: i32, retry_at: Instant },
}

/// What the listeners change: the UI's state, on the UI thread.
struct Model {
    status: Status,
    lines: Vec<String>,
    connections: u32,
}

struct ChatApp {
    pump: EventPump,
    ws: WebSocket,
    model: Rc<RefCell<Model>>,
    url: String,
    input: String,
    /// What `--say` types once connected.
    say: Vec<String>,
    self_test: Option<SelfTest>,
}

struct SelfTest {
    started: Instant,
    sent: bool,
    done: bool,
}

impl ChatApp {
    fn new(ctx: &egui::Context, options: Options) -> Result<ChatApp, airws::Error> {
        let pump = EventPump::new();
        // Called from the connection's thread: wake the UI loop.
        let waker = ctx.clone();
        pump.set_waker(move || waker.request_repaint());
        let ws = WebSocket::new();
        pump.attach(&ws)?;
        if let Some(token) = &options.token {
            ws.set_request_header("Authorization", &format!("Bearer {token}"))?;
        }
        let model = Rc::new(RefCell::new(Model {
            status: Status::Connecting,
            lines: Vec::new(),
            connections: 0,
        }));
        let m = model.clone();
        ws.add_local_event_listener(Event::CONNECT, move |_e: &Event| {
            let mut m = m.borrow_mut();
            m.status = Status::Open;
            m.connections += 1;
            m.lines.push("* connected".to_owned());
        })?;
        let m = model.clone();
        ws.add_local_event_listener(WebSocketEvent::DATA, move |e: &Event| {
            let text = e
                .string_data()
                .map_or_else(|| format!("<{} bytes>", e.data().len()), str::to_owned);
            m.borrow_mut().lines.push(format!("< {text}"));
        })?;
        let m = model.clone();
        ws.add_local_event_listener(IOErrorEvent::IO_ERROR, move |e: &Event| {
            m.borrow_mut().lines.push(format!("* {}", e.text()));
        })?;
        let m = model.clone();
        ws.add_local_event_listener(Event::CLOSE, move |e: &Event| {
            let code = e.target::<WebSocket>().map_or(0, |ws| ws.close_reason());
            let mut m = m.borrow_mut();
            m.lines.push(match e.error() {
                Some(error) => format!("* closed ({code}): {error}"),
                None => format!("* closed ({code})"),
            });
            m.status = Status::Closed {
                code,
                retry_at: Instant::now() + RECONNECT_AFTER,
            };
        })?;
        let app = ChatApp {
            pump,
            ws,
            model,
            url: options.url,
            input: String::new(),
            say: options.say,
            self_test: options.self_test.then(|| SelfTest {
                started: Instant::now(),
                sent: false,
                done: false,
            }),
        };
        app.connect();
        Ok(app)
    }

    fn connect(&self) {
        let mut m = self.model.borrow_mut();
        match self.ws.connect(&self.url, &[]) {
            Ok(()) => m.status = Status::Connecting,
            Err(e) => {
                m.lines.push(format!("* {e}"));
                m.status = Status::Closed {
                    code: 0,
                    retry_at: Instant::now() + RECONNECT_AFTER,
                };
            }
        }
    }

    /// What the Send button does.
    fn send(&mut self) {
        let text = std::mem::take(&mut self.input);
        if text.is_empty() {
            return;
        }
        let line = match self.ws.send_message(WebSocket::FMT_TEXT, text.as_str()) {
            Ok(()) => format!("> {text}"),
            Err(e) => format!("* {e}"),
        };
        self.model.borrow_mut().lines.push(line);
    }

    /// The self-test's steps, through the same UI state a user changes.
    fn drive_self_test(&mut self, ctx: &egui::Context) {
        let Some(test) = &mut self.self_test else {
            return;
        };
        if test.done {
            return;
        }
        let open = self.model.borrow().status == Status::Open;
        if open && !test.sent {
            test.sent = true;
            self.input = SELF_TEST_MESSAGE.to_owned();
            self.send();
            return;
        }
        let echoed = format!("< {SELF_TEST_MESSAGE}");
        if self.model.borrow().lines.contains(&echoed) {
            test.done = true;
            println!("SELF-TEST OK: sent and saw the echo of {SELF_TEST_MESSAGE:?}");
            let _ = self.ws.close(WebSocket::CLOSE_NORMAL);
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        } else if test.started.elapsed() > SELF_TEST_LIMIT {
            println!("SELF-TEST FAILED: {:?}", self.model.borrow().lines);
            std::process::exit(1);
        } else {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }
}

impl eframe::App for ChatApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // Every listener runs here, on the UI thread.
        self.pump.dispatch_pending();
        let status = self.model.borrow().status.clone();
        if let Status::Closed { retry_at, .. } = status {
            let now = Instant::now();
            if now >= retry_at {
                self.model
                    .borrow_mut()
                    .lines
                    .push("* reconnecting".to_owned());
                self.connect();
            } else {
                ctx.request_repaint_after(retry_at - now);
            }
        }
        if status == Status::Open {
            for text in std::mem::take(&mut self.say) {
                self.input = text;
                self.send();
            }
        }
        self.drive_self_test(ctx);

        egui::TopBottomPanel::top("status").show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label(&self.url);
                ui.separator();
                let connections = self.model.borrow().connections;
                ui.label(match &status {
                    Status::Connecting => "connecting…".to_owned(),
                    Status::Open => format!("open (connection {connections})"),
                    Status::Closed { code, retry_at } => format!(
                        "closed ({code}), reconnecting in {:.0} s",
                        retry_at
                            .saturating_duration_since(Instant::now())
                            .as_secs_f32()
                            .ceil()
                    ),
                });
            });
        });
        egui::TopBottomPanel::bottom("input").show(ctx, |ui| {
            ui.horizontal(|ui| {
                let field = ui.add(
                    egui::TextEdit::singleline(&mut self.input)
                        .hint_text("a message")
                        .desired_width(ui.available_width() - 70.0),
                );
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let can_send = status == Status::Open;
                if ui
                    .add_enabled(can_send, egui::Button::new("Send"))
                    .clicked()
                    || (enter && can_send)
                {
                    self.send();
                    field.request_focus();
                }
            });
        });
        egui::CentralPanel::default().show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for line in &self.model.borrow().lines {
                        ui.label(line);
                    }
                });
        });
    }
}

fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("airws chat")
            .with_inner_size([520.0, 360.0]),
        ..Default::default()
    };
    let result = eframe::run_native(
        "airws chat",
        native,
        Box::new(move |cc| Ok(Box::new(ChatApp::new(&cc.egui_ctx, options)?))),
    );
    if let Err(e) = result {
        eprintln!("gui_chat: {e}");
        std::process::exit(1);
    }
}
