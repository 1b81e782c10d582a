// HLS for every browser: the browser's own player where it has one (Safari, Chrome and Edge on
// recent versions), else hls.js (vendored, loaded only then) over Media Source Extensions.
//
//   import { attachStream, canStream } from "/static/js/stream.js";
//   const stream = await attachStream(video, playlistUrl);   // null: cannot play here
//   stream?.destroy();                                       // detach (frees the buffers)

const HLS_TYPE = "application/vnd.apple.mpegurl";
const HLS_MODULE = "/static/vendor/hls.light.min.mjs";

let loading = null;

/** Whether this browser plays HLS by itself. */
export function playsHlsNatively(element = document.createElement("video")) {
  return element.canPlayType(HLS_TYPE) !== "";
}

/** Whether HLS can play here at all: natively, or through hls.js on Media Source Extensions. */
export function canStream(element = document.createElement("video")) {
  return playsHlsNatively(element) || "MediaSource" in window || "ManagedMediaSource" in window;
}

function loadHls() {
  loading ??= import(HLS_MODULE).then((module) => module.default).catch(() => null);
  return loading;
}

/**
 * Play the HLS playlist at `url` in `video`. Fatal hls.js errors surface as the video's
 * "error" event, so callers recover the same way whichever path plays.
 */
export async function attachStream(video, url) {
  if (playsHlsNatively(video)) {
    video.src = url;
    return {
      destroy() {
        video.removeAttribute("src");
        video.load();
      },
    };
  }
  const Hls = await loadHls();
  if (!Hls || !Hls.isSupported()) return null;
  const hls = new Hls({ maxBufferLength: 20, backBufferLength: 10 });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (data?.fatal) video.dispatchEvent(new Event("error"));
  });
  hls.loadSource(url);
  hls.attachMedia(video);
  video.dataset.stream = "hls.js";
  return {
    destroy() {
      hls.destroy();
      delete video.dataset.stream;
    },
  };
}
