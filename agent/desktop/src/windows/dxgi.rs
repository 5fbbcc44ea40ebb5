//! DXGI Desktop Duplication: the desktop image the GPU composed, one output
//! (monitor) at a time, with the rectangles that changed and the pointer.
//!
//! Each `AcquireNextFrame` says what happened since the previous one: when
//! the image changed, the dirty and moved rectangles are read, the frame is
//! copied into a CPU-readable staging texture and only those rectangles
//! are copied into our buffer (the damage reported to the caller); when
//! only the pointer moved, nothing is copied. A timeout means nothing
//! changed. The duplication is lost when the desktop switches (UAC's secure
//! desktop, the lock screen, a mode change); it is made again on the next
//! capture, and refused while the secure desktop shows.
//!
//! Never run on a real GPU in this project's CI: Wine has no Desktop
//! Duplication, so there `WindowsCapturer::open` falls back to GDI.

use std::time::{Duration, Instant};

use deskside_protocol::session::{CursorShape, Monitor};
use windows::core::Interface;
use windows::Win32::Foundation::{E_ACCESSDENIED, HMODULE, RECT};
use windows::Win32::Graphics::Direct3D::D3D_DRIVER_TYPE_UNKNOWN;
use windows::Win32::Graphics::Direct3D11::{
    D3D11CreateDevice, ID3D11Device, ID3D11DeviceContext, ID3D11Texture2D, D3D11_CPU_ACCESS_READ,
    D3D11_CREATE_DEVICE_BGRA_SUPPORT, D3D11_MAPPED_SUBRESOURCE, D3D11_MAP_READ, D3D11_SDK_VERSION,
    D3D11_TEXTURE2D_DESC, D3D11_USAGE_STAGING,
};
use windows::Win32::Graphics::Dxgi::Common::{
    DXGI_MODE_ROTATION_IDENTITY, DXGI_MODE_ROTATION_UNSPECIFIED,
};
use windows::Win32::Graphics::Dxgi::{
    CreateDXGIFactory1, IDXGIAdapter1, IDXGIFactory1, IDXGIOutput1, IDXGIOutputDuplication,
    IDXGIResource, DXGI_ERROR_ACCESS_LOST, DXGI_ERROR_NOT_FOUND, DXGI_ERROR_WAIT_TIMEOUT,
    DXGI_OUTDUPL_FRAME_INFO, DXGI_OUTDUPL_MOVE_RECT, DXGI_OUTDUPL_POINTER_SHAPE_INFO,
    DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR, DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MASKED_COLOR,
    DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME,
};

use super::cursor::GdiCursor;
use super::{ensure_dpi_aware, win_error, RESTART_ADVICE};
use crate::capture::{CaptureError, Captured, Capturer, DamageRect, Frame};
use crate::windows_math::{color_cursor, masked_color_cursor, monochrome_bits_cursor};

/// How long the first capture of a monitor waits for its first image
/// (Desktop Duplication hands the current image out at once; this only
/// covers a slow GPU).
const FIRST_FRAME_TIMEOUT_MS: u32 = 500;

/// How often duplication is tried again while the secure desktop refuses
/// it.
const RETRY_SECURE_DESKTOP: Duration = Duration::from_millis(500);

/// Pointer shapes larger than this many bytes are not read.
const MAX_POINTER_SHAPE_BYTES: u32 = 4 * 1024 * 1024;

/// Desktop Duplication capture; see the module documentation.
#[derive(Debug)]
pub struct DxgiCapturer {
    outputs: Vec<Output>,
    session: Option<Duplication>,
    buffer: Vec<u8>,
    width: u32,
    height: u32,
    /// The monitor the buffer shows.
    holds: Option<u8>,
    damage: Vec<DamageRect>,
    /// The pointer's hot spot in desktop pixels, as duplication last said,
    /// and whether it is on the duplicated monitor.
    pointer: Option<(i32, i32)>,
    pointer_visible: bool,
    hot_spot: (i32, i32),
    last_shape: Option<CursorShape>,
    /// A shape the caller has not seen yet.
    pending_shape: Option<CursorShape>,
    /// Where the pointer is when duplication does not say.
    fallback_cursor: GdiCursor,
    rotation_warned: bool,
    /// No duplication is tried before this instant (the secure desktop
    /// refused the last one).
    secure_desktop_until: Option<Instant>,
    /// Set when duplicating failed for good; see `unavailable`.
    unavailable: Option<String>,
}

/// One output (monitor) of one adapter.
#[derive(Debug)]
struct Output {
    monitor: Monitor,
    /// The output's `HMONITOR`.
    handle: isize,
    adapter: IDXGIAdapter1,
    output: IDXGIOutput1,
}

/// The duplication of one output, with its device and staging texture.
#[derive(Debug)]
struct Duplication {
    index: u8,
    origin: (i32, i32),
    rotated: bool,
    device: ID3D11Device,
    context: ID3D11DeviceContext,
    duplication: IDXGIOutputDuplication,
    staging: Option<(ID3D11Texture2D, u32, u32)>,
}

// SAFETY: DXGI factories, adapters, outputs, the D3D11 device and the
// duplication are free-threaded COM objects; the immediate context is not
// thread-safe, but the capturer uses it from one thread at a time (every
// call goes through `&mut DxgiCapturer`), which D3D11 allows.
unsafe impl Send for DxgiCapturer {}

impl DxgiCapturer {
    /// Lists the outputs and duplicates the primary one. Fails when Desktop
    /// Duplication is unavailable (remote desktop sessions, drivers older
    /// than WDDM 1.2, Wine, the secure desktop).
    pub fn open() -> Result<Self, CaptureError> {
        ensure_dpi_aware();
        let outputs = enumerate()?;
        let primary = outputs.iter().position(|o| o.monitor.primary).unwrap_or(0);
        let Some(output) = outputs.get(primary) else {
            return Err(CaptureError::Windows {
                call: "IDXGIAdapter::EnumOutputs",
                detail: "no output is attached to the desktop".to_owned(),
                advice: "run the session helper in the employee's signed-in desktop session",
            });
        };
        let session = Duplication::new(primary as u8, output)?;
        Ok(Self {
            outputs,
            session: Some(session),
            buffer: Vec::new(),
            width: 0,
            height: 0,
            holds: None,
            damage: Vec::new(),
            pointer: None,
            pointer_visible: false,
            hot_spot: (0, 0),
            last_shape: None,
            pending_shape: None,
            fallback_cursor: GdiCursor::default(),
            rotation_warned: false,
            secure_desktop_until: None,
            unavailable: None,
        })
    }

    /// Makes the duplication of `monitor` when another one (or none) runs.
    ///
    /// While the secure desktop shows, duplicating is refused: it is tried
    /// again at most every [`RETRY_SECURE_DESKTOP`] rather than on every
    /// frame (each try makes a Direct3D device). Any other refusal means
    /// duplication went away for this session (a remote desktop connection
    /// took over the console): [`DxgiCapturer::unavailable`] then says why,
    /// and `WindowsCapturer` switches to GDI.
    fn duplication(&mut self, monitor: u8) -> Result<(), CaptureError> {
        if self.session.as_ref().map(|s| s.index) == Some(monitor) {
            return Ok(());
        }
        self.session = None;
        self.holds = None;
        if self
            .secure_desktop_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Err(CaptureError::SecureDesktop);
        }
        let output = self
            .outputs
            .get(usize::from(monitor))
            .ok_or(CaptureError::NoSuchMonitor {
                index: monitor,
                count: self.outputs.len(),
            })?;
        match Duplication::new(monitor, output) {
            Ok(session) => {
                self.secure_desktop_until = None;
                self.session = Some(session);
                Ok(())
            }
            Err(CaptureError::SecureDesktop) => {
                self.secure_desktop_until = Some(Instant::now() + RETRY_SECURE_DESKTOP);
                Err(CaptureError::SecureDesktop)
            }
            Err(e) => {
                self.unavailable = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Why Desktop Duplication stopped working in this session, when it
    /// did for another reason than the secure desktop: the caller should
    /// capture with GDI from now on.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Reads the pointer's new shape after a frame that carries one.
    fn read_pointer_shape(&mut self, size: u32) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if size > MAX_POINTER_SHAPE_BYTES {
            return;
        }
        let mut bytes = vec![0u8; size as usize];
        let mut needed = 0u32;
        let mut info = DXGI_OUTDUPL_POINTER_SHAPE_INFO::default();
        // SAFETY: the buffer is `size` bytes as announced by the frame
        // info; the call writes at most that and fills `info`.
        let read = unsafe {
            session.duplication.GetFramePointerShape(
                size,
                bytes.as_mut_ptr().cast(),
                &mut needed,
                &mut info,
            )
        };
        if let Err(e) = read {
            tracing::debug!("cannot read the pointer shape: {}", super::win_detail(&e));
            return;
        }
        let (w, h, pitch) = (info.Width, info.Height, info.Pitch as usize);
        let (hx, hy) = (info.HotSpot.x.max(0) as u32, info.HotSpot.y.max(0) as u32);
        let shape = match info.Type {
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME.0 as u32 => {
                monochrome_bits_cursor(&bytes, w, h / 2, pitch, hx, hy)
            }
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_COLOR.0 as u32 => {
                color_cursor(&bytes, w, h, pitch, None, hx, hy)
            }
            t if t == DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MASKED_COLOR.0 as u32 => {
                masked_color_cursor(&bytes, w, h, pitch, hx, hy)
            }
            _ => None,
        };
        if let Some(shape) = shape {
            self.hot_spot = (i32::from(shape.hot_x), i32::from(shape.hot_y));
            self.last_shape = Some(shape.clone());
            if self.pointer_visible {
                self.pending_shape = Some(shape);
            }
        }
    }
}

impl Capturer for DxgiCapturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let outputs = enumerate()?;
        let list: Vec<Monitor> = outputs.iter().map(|o| o.monitor.clone()).collect();
        // A changed list invalidates the running duplication's index.
        let same = list.len() == self.outputs.len()
            && list.iter().zip(&self.outputs).all(|(a, b)| *a == b.monitor);
        if !same {
            self.session = None;
            self.holds = None;
        }
        self.outputs = outputs;
        Ok(list)
    }

    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError> {
        let first = self.holds != Some(monitor);
        let timeout = if first { FIRST_FRAME_TIMEOUT_MS } else { 0 };
        self.duplication(monitor)?;
        let Some(session) = self.session.as_mut() else {
            return Err(CaptureError::Malformed("no duplication"));
        };
        let mut info = DXGI_OUTDUPL_FRAME_INFO::default();
        let mut resource: Option<IDXGIResource> = None;
        // SAFETY: both out-pointers refer to locals that outlive the call.
        let acquired = unsafe {
            session
                .duplication
                .AcquireNextFrame(timeout, &mut info, &mut resource)
        };
        match acquired {
            Ok(()) => {}
            Err(e) if e.code() == DXGI_ERROR_WAIT_TIMEOUT && !first => {
                // Nothing changed since the last frame.
                self.damage.clear();
                return Ok(Captured {
                    frame: Frame {
                        width: self.width,
                        height: self.height,
                        stride: self.width as usize * 4,
                        data: &self.buffer,
                    },
                    changed: false,
                });
            }
            Err(e) if e.code() == DXGI_ERROR_ACCESS_LOST => {
                // Desktop switch or mode change: duplicate again next time.
                self.session = None;
                self.holds = None;
                return Err(win_error(
                    "IDXGIOutputDuplication::AcquireNextFrame",
                    &e,
                    "the desktop switched (a UAC prompt, the lock screen, or a display mode change); capture resumes on the next frame",
                ));
            }
            Err(e) => {
                return Err(win_error(
                    "IDXGIOutputDuplication::AcquireNextFrame",
                    &e,
                    RESTART_ADVICE,
                ))
            }
        }
        let origin = session.origin;
        let rotated = session.rotated;
        // From here on the frame must be released whatever happens.
        let copied = match resource {
            Some(resource) if info.LastPresentTime != 0 || first => copy_frame(
                session,
                &resource,
                &info,
                first,
                &mut self.buffer,
                &mut self.damage,
            ),
            _ => {
                self.damage.clear();
                Ok(None)
            }
        };
        if info.LastMouseUpdateTime != 0 {
            let visible = info.PointerPosition.Visible.as_bool();
            if visible {
                let p = info.PointerPosition.Position;
                self.pointer = Some((origin.0 + p.x, origin.1 + p.y));
            }
            if visible != self.pointer_visible {
                self.pointer_visible = visible;
                self.pending_shape = if visible {
                    self.last_shape.clone()
                } else {
                    // On another monitor or hidden: let GDI say where.
                    self.pointer = None;
                    None
                };
            }
        }
        if info.PointerShapeBufferSize > 0 {
            self.read_pointer_shape(info.PointerShapeBufferSize);
        }
        if let Some(session) = self.session.as_ref() {
            // SAFETY: a frame was acquired above and is released once.
            let _ = unsafe { session.duplication.ReleaseFrame() };
        }
        if rotated && !self.rotation_warned {
            self.rotation_warned = true;
            tracing::warn!("monitor {monitor} is rotated; its picture is sent in the GPU's orientation (untested)");
        }
        let changed = match copied? {
            Some((width, height)) => {
                self.width = width;
                self.height = height;
                self.holds = Some(monitor);
                true
            }
            None => false,
        };
        Ok(Captured {
            frame: Frame {
                width: self.width,
                height: self.height,
                stride: self.width as usize * 4,
                data: &self.buffer,
            },
            changed,
        })
    }

    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        match (self.pointer, self.pointer_visible) {
            (Some((x, y)), true) => Ok(Some((
                x + self.hot_spot.0,
                y + self.hot_spot.1,
                self.pending_shape.take(),
            ))),
            _ => self.fallback_cursor.poll(),
        }
    }

    fn damage(&self) -> Option<&[DamageRect]> {
        Some(&self.damage)
    }
}

impl Duplication {
    fn new(index: u8, output: &Output) -> Result<Self, CaptureError> {
        let mut device: Option<ID3D11Device> = None;
        let mut context: Option<ID3D11DeviceContext> = None;
        // SAFETY: the adapter is a live COM object; the out-pointers refer
        // to locals that outlive the call.
        unsafe {
            D3D11CreateDevice(
                &output.adapter,
                D3D_DRIVER_TYPE_UNKNOWN,
                HMODULE::default(),
                D3D11_CREATE_DEVICE_BGRA_SUPPORT,
                None,
                D3D11_SDK_VERSION,
                Some(&mut device),
                None,
                Some(&mut context),
            )
        }
        .map_err(|e| win_error("D3D11CreateDevice", &e, "update the display driver"))?;
        let (Some(device), Some(context)) = (device, context) else {
            return Err(CaptureError::Windows {
                call: "D3D11CreateDevice",
                detail: "no device returned".to_owned(),
                advice: "update the display driver",
            });
        };
        // SAFETY: the output and device are live COM objects.
        let duplication = unsafe { output.output.DuplicateOutput(&device) }.map_err(|e| {
            if e.code() == E_ACCESSDENIED {
                CaptureError::SecureDesktop
            } else {
                win_error(
                    "IDXGIOutput1::DuplicateOutput",
                    &e,
                    "Desktop Duplication is unavailable here (remote desktop session, old driver, or too many applications duplicating); GDI capture is used instead",
                )
            }
        })?;
        // SAFETY: a live duplication; GetDesc only fills a struct.
        let desc = unsafe { duplication.GetDesc() };
        let rotated = desc.Rotation != DXGI_MODE_ROTATION_IDENTITY
            && desc.Rotation != DXGI_MODE_ROTATION_UNSPECIFIED;
        Ok(Self {
            index,
            origin: (output.monitor.x, output.monitor.y),
            rotated,
            device,
            context,
            duplication,
            staging: None,
        })
    }
}

/// Copies the acquired frame's changed rectangles (all of it on the first
/// frame) into `buffer` through the staging texture; fills `damage`.
/// Returns the frame's size.
fn copy_frame(
    session: &mut Duplication,
    resource: &IDXGIResource,
    info: &DXGI_OUTDUPL_FRAME_INFO,
    first: bool,
    buffer: &mut Vec<u8>,
    damage: &mut Vec<DamageRect>,
) -> Result<Option<(u32, u32)>, CaptureError> {
    let texture: ID3D11Texture2D = resource
        .cast()
        .map_err(|e| win_error("IDXGIResource::QueryInterface", &e, RESTART_ADVICE))?;
    let mut desc = D3D11_TEXTURE2D_DESC::default();
    // SAFETY: fills `desc`.
    unsafe { texture.GetDesc(&mut desc) };
    let (width, height) = (desc.Width, desc.Height);
    let fresh = first
        || buffer.len() != width as usize * height as usize * 4
        || session
            .staging
            .as_ref()
            .is_none_or(|(_, w, h)| (*w, *h) != (width, height));
    damage.clear();
    if fresh {
        damage.push(DamageRect {
            x: 0,
            y: 0,
            width,
            height,
        });
    } else {
        frame_rects(&session.duplication, info, width, height, damage)?;
        if damage.is_empty() {
            return Ok(None);
        }
    }
    if fresh {
        let staging_desc = D3D11_TEXTURE2D_DESC {
            Width: width,
            Height: height,
            MipLevels: 1,
            ArraySize: 1,
            Format: desc.Format,
            SampleDesc: desc.SampleDesc,
            Usage: D3D11_USAGE_STAGING,
            BindFlags: 0,
            CPUAccessFlags: D3D11_CPU_ACCESS_READ.0 as u32,
            MiscFlags: 0,
        };
        let mut staging: Option<ID3D11Texture2D> = None;
        // SAFETY: a valid description and an out-pointer to a local.
        unsafe {
            session
                .device
                .CreateTexture2D(&staging_desc, None, Some(&mut staging))
        }
        .map_err(|e| win_error("ID3D11Device::CreateTexture2D", &e, RESTART_ADVICE))?;
        let staging = staging.ok_or(CaptureError::Malformed(
            "CreateTexture2D returned no texture",
        ))?;
        session.staging = Some((staging, width, height));
        buffer.clear();
        buffer.resize(width as usize * height as usize * 4, 0);
    }
    let Some((staging, _, _)) = session.staging.as_ref() else {
        return Err(CaptureError::Malformed("no staging texture"));
    };
    let mut mapped = D3D11_MAPPED_SUBRESOURCE::default();
    // SAFETY: both textures are live and have the same size and format;
    // Map fills `mapped` with a pointer valid until Unmap below.
    unsafe {
        session.context.CopyResource(staging, &texture);
        session
            .context
            .Map(staging, 0, D3D11_MAP_READ, 0, Some(&mut mapped))
    }
    .map_err(|e| win_error("ID3D11DeviceContext::Map", &e, RESTART_ADVICE))?;
    let pitch = mapped.RowPitch as usize;
    let stride = width as usize * 4;
    if !mapped.pData.is_null() && pitch >= stride {
        // SAFETY: a mapped staging texture is `RowPitch * height` readable
        // bytes at `pData` until Unmap.
        let source = unsafe {
            std::slice::from_raw_parts(mapped.pData.cast::<u8>(), pitch * height as usize)
        };
        for rect in damage.iter() {
            let (x0, x1) = (rect.x as usize * 4, (rect.x + rect.width) as usize * 4);
            for y in rect.y..rect.y + rect.height {
                let row = y as usize;
                let from = &source[row * pitch + x0..row * pitch + x1];
                buffer[row * stride + x0..row * stride + x1].copy_from_slice(from);
            }
        }
    }
    // SAFETY: unmaps what was mapped above.
    unsafe { session.context.Unmap(staging, 0) };
    Ok(Some((width, height)))
}

/// The frame's moved (destination) and dirty rectangles, clipped to the
/// frame.
fn frame_rects(
    duplication: &IDXGIOutputDuplication,
    info: &DXGI_OUTDUPL_FRAME_INFO,
    width: u32,
    height: u32,
    damage: &mut Vec<DamageRect>,
) -> Result<(), CaptureError> {
    let total = info.TotalMetadataBufferSize as usize;
    if total == 0 {
        return Ok(());
    }
    let mut moves =
        vec![DXGI_OUTDUPL_MOVE_RECT::default(); total / size_of::<DXGI_OUTDUPL_MOVE_RECT>() + 1];
    let mut needed = 0u32;
    // SAFETY: the buffer's size in bytes is passed with it.
    unsafe {
        duplication.GetFrameMoveRects(
            (moves.len() * size_of::<DXGI_OUTDUPL_MOVE_RECT>()) as u32,
            moves.as_mut_ptr(),
            &mut needed,
        )
    }
    .map_err(|e| {
        win_error(
            "IDXGIOutputDuplication::GetFrameMoveRects",
            &e,
            RESTART_ADVICE,
        )
    })?;
    moves.truncate(needed as usize / size_of::<DXGI_OUTDUPL_MOVE_RECT>());
    let mut dirty = vec![RECT::default(); total / size_of::<RECT>() + 1];
    // SAFETY: as above.
    unsafe {
        duplication.GetFrameDirtyRects(
            (dirty.len() * size_of::<RECT>()) as u32,
            dirty.as_mut_ptr(),
            &mut needed,
        )
    }
    .map_err(|e| {
        win_error(
            "IDXGIOutputDuplication::GetFrameDirtyRects",
            &e,
            RESTART_ADVICE,
        )
    })?;
    dirty.truncate(needed as usize / size_of::<RECT>());
    for r in moves.iter().map(|m| m.DestinationRect).chain(dirty) {
        let x0 = r.left.clamp(0, width as i32) as u32;
        let x1 = r.right.clamp(0, width as i32) as u32;
        let y0 = r.top.clamp(0, height as i32) as u32;
        let y1 = r.bottom.clamp(0, height as i32) as u32;
        if x1 > x0 && y1 > y0 {
            damage.push(DamageRect {
                x: x0,
                y: y0,
                width: x1 - x0,
                height: y1 - y0,
            });
        }
    }
    Ok(())
}

/// The outputs attached to the desktop, adapter by adapter.
fn enumerate() -> Result<Vec<Output>, CaptureError> {
    // SAFETY: creates a factory; no arguments.
    let factory: IDXGIFactory1 = unsafe { CreateDXGIFactory1() }
        .map_err(|e| win_error("CreateDXGIFactory1", &e, "update the display driver"))?;
    let mut outputs = Vec::new();
    for a in 0.. {
        // SAFETY: enumerates by index until DXGI_ERROR_NOT_FOUND.
        let adapter = match unsafe { factory.EnumAdapters1(a) } {
            Ok(adapter) => adapter,
            Err(e) if e.code() == DXGI_ERROR_NOT_FOUND => break,
            Err(e) => {
                return Err(win_error(
                    "IDXGIFactory1::EnumAdapters1",
                    &e,
                    RESTART_ADVICE,
                ))
            }
        };
        for o in 0.. {
            // SAFETY: as above.
            let output = match unsafe { adapter.EnumOutputs(o) } {
                Ok(output) => output,
                Err(e) if e.code() == DXGI_ERROR_NOT_FOUND => break,
                Err(e) => return Err(win_error("IDXGIAdapter::EnumOutputs", &e, RESTART_ADVICE)),
            };
            // SAFETY: fills a struct.
            let desc = unsafe { output.GetDesc() }
                .map_err(|e| win_error("IDXGIOutput::GetDesc", &e, RESTART_ADVICE))?;
            if !desc.AttachedToDesktop.as_bool() {
                continue;
            }
            let output1: IDXGIOutput1 = output.cast().map_err(|e| {
                win_error(
                    "IDXGIOutput::QueryInterface(IDXGIOutput1)",
                    &e,
                    "Desktop Duplication needs Windows 8 or later",
                )
            })?;
            let Ok(index) = u8::try_from(outputs.len()) else {
                break;
            };
            let r = desc.DesktopCoordinates;
            outputs.push(Output {
                monitor: Monitor {
                    index,
                    name: super::string_until_nul(&desc.DeviceName),
                    x: r.left,
                    y: r.top,
                    width: u32::try_from(r.right - r.left).unwrap_or(0),
                    height: u32::try_from(r.bottom - r.top).unwrap_or(0),
                    // The primary monitor holds the desktop's origin.
                    primary: r.left == 0 && r.top == 0,
                },
                handle: desc.Monitor.0 as isize,
                adapter: adapter.clone(),
                output: output1,
            });
        }
    }
    // The same order, names and primary flag as GDI's list, so a monitor
    // index means the same screen whichever backend runs (the helper lists
    // monitors with GDI before a session starts).
    let gdi = super::list_monitors()?;
    let position = |handle: isize| gdi.iter().position(|a| a.handle == handle);
    outputs.sort_by_key(|o| position(o.handle).unwrap_or(usize::MAX));
    for (i, o) in outputs.iter_mut().enumerate() {
        o.monitor.index = i as u8;
        if let Some(a) = position(o.handle).and_then(|p| gdi.get(p)) {
            o.monitor.name = a.monitor.name.clone();
            o.monitor.primary = a.monitor.primary;
        }
    }
    Ok(outputs)
}
