//! The pointer's shape travels apart from the picture (issue 15), end to
//! end with the real binaries on two Xvfb displays: each change of shape on
//! the employee's desktop reaches the console once, with its picture the
//! first time and by number after that.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import` (the stage's consent
//! click): with `CI=true` a missing one fails the test; elsewhere the test
//! is skipped with a message.

use std::time::Duration;

use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::prerequisites;
use serde_json::Value;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, Cursor, Rectangle,
    Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

const DISPLAYS: std::ops::RangeInclusive<u16> = 170..=174;
const AGENT_SCREEN: (u32, u32) = (1024, 768);
/// The test's own window, bottom-left: clear of the employee's session
/// indicator (top-left) and of the X client (from x = 400).
const WINDOW: (i16, i16, u16, u16) = (40, 560, 160, 160);

/// Two pointer shapes of sizes no stock pointer has, so the console's
/// report names them without doubt: (width, height, hot x, hot y).
const SHAPE_A: (u16, u16, u16, u16) = (13, 7, 3, 2);
const SHAPE_B: (u16, u16, u16, u16) = (9, 11, 4, 5);

fn options() -> StageOptions {
    StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: AGENT_SCREEN,
        console_screen: (640, 480),
        displays: DISPLAYS,
        xclient_args: vec![
            "--geometry".into(),
            "624x468+400+300".into(),
            "--text".into(),
            "still screen".into(),
        ],
        agent_monitors: 1,
    }
}

/// A solid pointer of `shape`'s size and hot spot, made from a 1-bit
/// pixmap like any X client's pointer.
fn make_pointer(conn: &RustConnection, root: Window, shape: (u16, u16, u16, u16)) -> Cursor {
    let (width, height, hot_x, hot_y) = shape;
    let pixmap = conn.generate_id().expect("id");
    conn.create_pixmap(1, pixmap, root, width, height)
        .expect("pixmap");
    let gc = conn.generate_id().expect("id");
    conn.create_gc(gc, pixmap, &CreateGCAux::new().foreground(1))
        .expect("gc");
    conn.poly_fill_rectangle(
        pixmap,
        gc,
        &[Rectangle {
            x: 0,
            y: 0,
            width,
            height,
        }],
    )
    .expect("fill");
    let cursor = conn.generate_id().expect("id");
    conn.create_cursor(cursor, pixmap, pixmap, 0xffff, 0, 0, 0, 0, 0, hot_x, hot_y)
        .expect("cursor");
    conn.free_gc(gc).expect("free gc");
    conn.free_pixmap(pixmap).expect("free pixmap");
    cursor
}

fn is_shape(v: &Value, shape: (u16, u16, u16, u16)) -> bool {
    let (width, height, hot_x, hot_y) = shape;
    v["type"] == "pointer_shape"
        && v["shape"]["width"] == width
        && v["shape"]["height"] == height
        && v["shape"]["hot_x"] == hot_x
        && v["shape"]["hot_y"] == hot_y
}

/// The console hears of every change of shape exactly once: a new shape
/// with its picture, a shape seen before by its number only, and nothing
/// while the shape stays. Before this change the agent sent no
/// `PointerShape` at all (shapes rode on frames and pointer moves, pictures
/// again for every change), and this test fails at the first wait.
#[test]
fn each_change_of_the_pointer_shape_reaches_the_console_once() {
    if !prerequisites() {
        eprintln!("skipped: Xvfb, xdotool or ImageMagick missing");
        return;
    }
    let mut stage = SessionStage::start(&options());
    let (session, out) = stage.session(&["--headless", "--view-only", "--duration", "60s"]);
    out.until(Duration::from_secs(60), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    // The desktop's pointer as the session starts.
    let first = out.until(Duration::from_secs(60), |v| v["type"] == "pointer_shape");
    assert!(
        first.iter().any(|v| v["type"] == "pointer_shape"),
        "the console never heard of the pointer's shape: {first:?}\nconsole: {}\nhelper: {}",
        session.log(),
        stage.helper.log()
    );

    let (conn, screen_num) = x11rb::connect(Some(stage.agent_x.display())).expect("X connection");
    let root = conn.setup().roots[screen_num].root;
    let white = conn.setup().roots[screen_num].white_pixel;
    let (pointer_a, pointer_b) = (
        make_pointer(&conn, root, SHAPE_A),
        make_pointer(&conn, root, SHAPE_B),
    );
    let window = conn.generate_id().expect("id");
    let (x, y, w, h) = WINDOW;
    conn.create_window(
        0,
        window,
        root,
        x,
        y,
        w,
        h,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(white)
            .override_redirect(1)
            .cursor(pointer_a),
    )
    .expect("window");
    // The pointer waits where the window will appear (over the bare root
    // window), then the window maps under it.
    let (centre_x, centre_y) = (x + w as i16 / 2, y + h as i16 / 2);
    conn.warp_pointer(x11rb::NONE, root, 0, 0, 0, 0, centre_x, centre_y)
        .expect("warp");
    conn.sync().expect("sync");
    // Whatever shape the pointer has there (the bare root window's) goes
    // out before the helper reports the new position: wait for that
    // report, so no change before the window's belongs to what follows.
    let settle = out.until(Duration::from_secs(10), |v| {
        v["type"] == "pointer" && v["x"] == centre_x && v["y"] == centre_y
    });
    let mut seen: Vec<Value> = Vec::new();
    conn.map_window(window).expect("map");
    conn.sync().expect("sync");
    let wait = |seen: &mut Vec<Value>, what: &str, stop: &dyn Fn(&Value) -> bool| {
        let lines = out.until(Duration::from_secs(20), stop);
        let found = lines.iter().any(stop);
        seen.extend(lines);
        assert!(
            found,
            "{what} never reached the console; it got {seen:?} (before: {settle:?})\nhelper: {}",
            stage.helper.log()
        );
    };
    wait(&mut seen, "shape A", &|v| is_shape(v, SHAPE_A));
    conn.change_window_attributes(window, &ChangeWindowAttributesAux::new().cursor(pointer_b))
        .expect("shape B");
    conn.sync().expect("sync");
    wait(&mut seen, "shape B", &|v| is_shape(v, SHAPE_B));
    conn.change_window_attributes(window, &ChangeWindowAttributesAux::new().cursor(pointer_a))
        .expect("shape A again");
    conn.sync().expect("sync");
    wait(&mut seen, "shape A again", &|v| {
        is_shape(v, SHAPE_A) && v["picture"] == false
    });
    // Anything sent twice would come within a few captures (33 ms apart).
    seen.extend(out.until(Duration::from_secs(1), |_| false));

    let shapes: Vec<(u64, bool, u64, u64)> = seen
        .iter()
        .filter(|v| v["type"] == "pointer_shape")
        .map(|v| {
            (
                v["id"].as_u64().unwrap_or(0),
                v["picture"] == true,
                v["shape"]["width"].as_u64().unwrap_or(0),
                v["shape"]["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    eprintln!("pointer shapes after the window appeared: {shapes:?}");
    assert_eq!(shapes.len(), 3, "one message per change, got {shapes:?}");
    let (id_a, id_b) = (shapes[0].0, shapes[1].0);
    assert_ne!(id_a, id_b, "two shapes, two numbers: {shapes:?}");
    assert_eq!(
        shapes,
        vec![
            (id_a, true, 13, 7),
            (id_b, true, 9, 11),
            (id_a, false, 13, 7)
        ],
        "new shapes come with their picture, a shape seen before by number only"
    );
}
