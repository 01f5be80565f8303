// One connection to GET /v1/events/stream shared by every page: `build` and `runner`
// events as they happen. Nothing is replayed after a reconnect, so listeners are told
// ("reconnected") and fetch their lists again.

import { useEffect, useRef } from "preact/hooks";

const listeners = new Set();
let source = null;
let retry = null;
let opened = false;
let delay = 1000;

function emit(type, data) {
  listeners.forEach((fn) => fn(type, data));
}

function connect() {
  if (source || retry || !listeners.size) return;
  source = new EventSource("/v1/events/stream");
  // `ready`: the stream is open and will carry every later change, so lists load again
  // now (nothing falls between that load and the first event). `resync`: changes were
  // skipped. Either way the lists are fetched again.
  source.addEventListener("ready", () => {
    if (opened) emit("reconnected", null);
    opened = true;
    delay = 1000;
  });
  source.addEventListener("resync", () => emit("reconnected", null));
  source.addEventListener("done", () => emit("ended", null));
  for (const type of ["build", "runner"]) {
    source.addEventListener(type, (event) => {
      try {
        emit(type, JSON.parse(event.data));
      } catch {
        /* not ours */
      }
    });
  }
  source.addEventListener("error", () => {
    // The browser retries by itself unless the answer was not an event stream.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      retry = setTimeout(() => {
        retry = null;
        opened = true; // whatever came back, lists must be fetched again
        connect();
      }, delay);
      delay = Math.min(delay * 2, 30000);
    }
  });
}

export function closeEvents() {
  if (source) source.close();
  source = null;
  if (retry) clearTimeout(retry);
  retry = null;
  opened = false;
}

/** Calls handler(type, data) for live events while the component is mounted. */
export function useEvents(handler) {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const fn = (type, data) => ref.current(type, data);
    listeners.add(fn);
    connect();
    return () => {
      listeners.delete(fn);
      if (!listeners.size) closeEvents();
    };
  }, []);
}
