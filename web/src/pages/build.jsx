// One build: its status, timing, commit, steps and artifacts, and the log as the main
// workspace. The log is fetched whole once, then followed over the SSE stream from the
// last line held (Last-Event-ID), so a dropped connection resumes with no gap and no
// line twice; a requeued build's new attempt replaces the lines shown.

import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, readEvents } from "../api.js";
import { useEvents } from "../events.js";
import { LogModel } from "../logmodel.js";
import { LogView } from "../LogView.jsx";
import { ACTIVE, Action, ErrorNote, Link, Status, buildDuration, buildName, duration, formatDate, useId, useLoad } from "../ui.jsx";
import { BuildActions } from "./builds.jsx";

function parseId(id) {
  if (!id) return null;
  const colon = id.lastIndexOf(":");
  const attempt = colon < 0 ? 1 : Number(id.slice(0, colon));
  const sequence = Number(id.slice(colon + 1));
  return Number.isFinite(attempt) && Number.isFinite(sequence) ? { attempt, sequence } : null;
}

const pause = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

/** The log of build `id`, kept in a LogModel; version changes when lines arrive. */
function useLogFeed(id, onFinished) {
  const [feed, setFeed] = useState(() => ({ model: new LogModel(), id }));
  const [version, setVersion] = useState(0);
  const [state, setState] = useState({ loading: true, live: false, error: null });
  const finished = useRef(onFinished);
  finished.current = onFinished;

  useEffect(() => {
    const model = new LogModel();
    setFeed({ model, id });
    setVersion(0);
    const controller = new AbortController();
    const { signal } = controller;
    let attempt = 1;
    let last = -1;
    let pending = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      if (!pending.length) return;
      model.append(pending);
      pending = [];
      setVersion(model.version);
    };
    const queue = (line) => {
      pending.push(line);
      if (!frame) frame = requestAnimationFrame(flush);
    };
    const restart = (next) => {
      pending = [];
      model.reset();
      attempt = next;
      last = -1;
      setVersion(model.version);
    };

    (async () => {
      try {
        const first = await get(`/v1/builds/${id}/logs?limit=-1&timestamps=true`, { signal });
        attempt = first.attempt || 1;
        model.append(first.logs);
        if (first.logs.length) last = first.logs[first.logs.length - 1].sequence;
        setVersion(model.version);
        setState({ loading: false, live: false, error: null });
      } catch (err) {
        if (signal.aborted) return;
        setState({ loading: false, live: false, error: err });
        return;
      }
      let delay = 1000;
      while (!signal.aborted) {
        let reason = null;
        try {
          await readEvents(`/v1/builds/${id}/logs/stream`, {
            lastEventId: attempt === 1 ? String(last) : `${attempt}:${last}`,
            signal,
            onOpen: () => {
              delay = 1000;
              setState((s) => ({ ...s, live: true, error: null }));
            },
            onEvent: (type, data, eventId) => {
              if (type === "log") {
                const at = parseId(eventId) || { attempt, sequence: NaN };
                if (at.attempt > attempt) restart(at.attempt);
                if (at.attempt < attempt) return;
                const line = JSON.parse(data);
                if (line.sequence <= last) return; // already shown
                last = line.sequence;
                line.at = Math.floor(Date.now() / 1000); // a live line: stored just now
                queue(line);
              } else if (type === "attempt") {
                const next = JSON.parse(data).attempt;
                if (next > attempt) restart(next);
              } else if (type === "done") {
                reason = data;
              }
            },
          });
        } catch (err) {
          if (signal.aborted) return;
          if ([401, 403, 404].includes(err.status)) {
            setState((s) => ({ ...s, live: false, error: err }));
            return;
          }
        }
        if (signal.aborted) return;
        if (frame) {
          cancelAnimationFrame(frame);
          flush();
        }
        if (reason === "build_finished" || reason === "build_not_found") {
          // The stream said it sent everything; ask the store once for anything after
          // the last line held, so that the finished log is whole whatever happened.
          try {
            const read = (after) => get(`/v1/builds/${id}/logs?after_sequence=${after}&limit=-1&attempt=${attempt}&timestamps=true`, { signal });
            const rest = await read(last);
            const missing = rest.logs.filter((line) => line.sequence > last);
            if (missing.length) {
              last = missing[missing.length - 1].sequence;
              model.append(missing);
            }
            if (model.length !== rest.total) {
              // Lines are missing before the last one held: read the whole log again.
              const whole = await read(-1);
              const folded = new Set(model.folded);
              model.reset();
              model.folded = folded;
              model.append(whole.logs);
            }
            setVersion(model.version);
          } catch {
            /* the lines shown stay */
          }
          setState((s) => ({ ...s, live: false }));
          finished.current();
          return;
        }
        setState((s) => ({ ...s, live: false }));
        if (reason !== "authorization_ended") {
          await pause(delay, signal);
          delay = Math.min(delay * 2, 10000);
        }
      }
    })();
    return () => {
      controller.abort();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [id]);

  return { model: feed.id === id ? feed.model : null, version, ...state };
}

function lineFromHash() {
  const m = window.location.hash.match(/^#L(\d+)$/);
  return m ? Number(m[1]) - 1 : null;
}

function formatSize(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function usePrefs() {
  const read = (key, fallback) => {
    try {
      const v = localStorage.getItem(`oore.log.${key}`);
      return v === null ? fallback : v === "1";
    } catch {
      return fallback;
    }
  };
  const [wrap, setWrap] = useState(() => read("wrap", true));
  const [timestamps, setTimestamps] = useState(() => read("timestamps", false));
  const save = (key, set) => (value) => {
    set(value);
    try {
      localStorage.setItem(`oore.log.${key}`, value ? "1" : "0");
    } catch {
      /* private mode */
    }
  };
  return { wrap, setWrap: save("wrap", setWrap), timestamps, setTimestamps: save("timestamps", setTimestamps) };
}

export function BuildPage({ id, user }) {
  const detail = useLoad(() => get(`/v1/builds/${id}`), [id]);
  const artifacts = useLoad(() => get(`/v1/builds/${id}/artifacts`), [id]);
  const feed = useLogFeed(id, () => {
    detail.reload();
    artifacts.reload();
  });
  useEvents((type, data) => {
    if (type === "reconnected") detail.reload();
    if (type === "build" && data?.build?.id === id) {
      detail.setData((d) => (d ? { ...d, build: { ...d.build, ...data.build } } : d));
      if (!ACTIVE.includes(data.build.status)) artifacts.reload();
    }
  });

  const prefs = usePrefs();
  const [follow, setFollow] = useState(() => lineFromHash() === null);
  const [target, setTarget] = useState(null);
  const [scrollRequest, setScrollRequest] = useState(null);
  const [searchText, setSearchText] = useState("");
  const [needle, setNeedle] = useState("");
  const [matches, setMatches] = useState([]);
  const [matchIndex, setMatchIndex] = useState(-1);
  const [note, setNote] = useState("");
  const [, tick] = useState(0);
  const pendingHash = useRef(lineFromHash());
  const searchId = useId("search");
  const model = feed.model;

  const show = (line, { mark = true } = {}) => {
    if (!model || line < 0 || line >= model.length) return;
    model.reveal(line);
    setFollow(false);
    if (mark) setTarget(line);
    setScrollRequest({ line, n: Math.random() });
  };

  // #L123: open scrolled to that line, as soon as it has arrived.
  useEffect(() => {
    const onHash = () => {
      pendingHash.current = lineFromHash();
      if (pendingHash.current !== null && model && pendingHash.current < model.length) {
        show(pendingHash.current);
        pendingHash.current = null;
      }
    };
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, [model]);
  useEffect(() => {
    const want = pendingHash.current;
    if (want !== null && model && want < model.length) {
      pendingHash.current = null;
      show(want);
    }
  }, [feed.version, model]);

  // Search the whole log (again as lines arrive, at most twice a second).
  useEffect(() => {
    const t = setTimeout(() => setNeedle(searchText), 150);
    return () => clearTimeout(t);
  }, [searchText]);
  const searched = useRef({ needle: "", at: 0 });
  useEffect(() => {
    if (!model) return;
    if (!needle) {
      setMatches([]);
      setMatchIndex(-1);
      return;
    }
    const fresh = searched.current.needle !== needle;
    const run = () => {
      searched.current = { needle, at: Date.now() };
      const found = model.search(needle);
      setMatches(found);
      if (fresh) {
        setMatchIndex(found.length ? 0 : -1);
        if (found.length) show(found[0], { mark: false });
      }
    };
    if (fresh || Date.now() - searched.current.at > 500) run();
    else {
      const t = setTimeout(run, 500);
      return () => clearTimeout(t);
    }
  }, [needle, feed.version, model]);
  const step = (by) => {
    if (!matches.length) return;
    const next = (matchIndex + by + matches.length) % matches.length;
    setMatchIndex(next);
    show(matches[next], { mark: false });
  };

  const build = detail.data?.build;
  const active = build && ACTIVE.includes(build.status);

  // Lines arriving for a build still shown as waiting: it started; fetch it again (at
  // most once a second) rather than wait for the events stream.
  const refreshed = useRef(0);
  useEffect(() => {
    if (!build || build.status === "running" || !active || !feed.version) return;
    const due = refreshed.current + 1000 - Date.now();
    const t = setTimeout(() => {
      refreshed.current = Date.now();
      detail.reload();
    }, Math.max(0, due));
    return () => clearTimeout(t);
  }, [feed.version, build?.status]);
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [active]);

  if (detail.error && !detail.data) return <ErrorNote error={detail.error} />;
  if (!build) return <p class="loading">Loading…</p>;

  const onLineLink = (line) => {
    history.replaceState(null, "", `#L${line + 1}`);
    setTarget(line);
    setFollow(false);
  };
  const firstError = () => {
    const line = model ? model.firstError() : -1;
    if (line < 0) setNote("No error found in the log.");
    else {
      setNote(`First error on line ${line + 1}.`);
      show(line);
    }
  };
  const download = () => {
    const blob = new Blob([model.raw()], { type: "text/plain;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${buildName(build).replace(/[^A-Za-z0-9._-]+/g, "-")}.log`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  const foldAll = (fold) => {
    if (!model) return;
    model.groups.forEach((_, g) => (fold ? model.folded.add(g) : model.folded.delete(g)));
    model.rebuildRows();
    tick((n) => n + 1);
  };
  const toggle = (g) => {
    model.toggle(g);
    tick((n) => n + 1);
  };
  const steps = build.step_results || [];
  const showStep = (name) => {
    const g = model?.groups.findIndex((group) => group.name === name);
    if (g >= 0) show(model.groups[g].start);
  };

  return (
    <section class="build-page">
      <div class="build-head">
        <div>
          <p class="crumbs">
            <Link href="/builds">Builds</Link> / {build.context?.project_name ? <Link href={`/projects/${build.project_id}`}>{build.context.project_name}</Link> : null}
          </p>
          <h1>
            <Status status={build.status} /> {buildName(build)}{" "}
            <span class="sub">{build.context?.pipeline_name || ""}</span>
          </h1>
        </div>
        <BuildActions build={build} user={user} onChanged={(b) => detail.setData((d) => ({ ...d, build: { ...d.build, ...b } }))} />
      </div>
      <dl class="meta">
        <div>
          <dt>Branch</dt>
          <dd>{build.branch || "—"}</dd>
        </div>
        <div>
          <dt>Commit</dt>
          <dd>
            <code title={build.commit_sha}>{(build.commit_sha || "—").slice(0, 12)}</code>
          </dd>
        </div>
        <div>
          <dt>Triggered by</dt>
          <dd>
            {build.trigger_actor || build.trigger_type}
            {build.source_build_id ? (
              <>
                {" "}(rerun of <Link href={`/builds/${build.source_build_id}`}>a build</Link>)
              </>
            ) : null}
          </dd>
        </div>
        <div>
          <dt>Queued</dt>
          <dd>{formatDate(build.queued_at)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatDate(build.started_at) || "—"}</dd>
        </div>
        <div>
          <dt>Finished</dt>
          <dd>{formatDate(build.finished_at) || "—"}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{buildDuration(build) || "—"}</dd>
        </div>
        {build.context?.runner_name ? (
          <div>
            <dt>Runner</dt>
            <dd>{build.context.runner_name}</dd>
          </div>
        ) : null}
        {build.attempt > 1 ? (
          <div>
            <dt>Attempt</dt>
            <dd>{build.attempt}</dd>
          </div>
        ) : null}
      </dl>
      {build.runner_policy_block_reason ? <p class="warn">Waiting: {build.runner_policy_block_reason.replace(/_/g, " ")}</p> : null}
      {steps.length || artifacts.data?.artifacts?.length ? (
      <details class="build-side" open>
        <summary>
          Steps ({steps.length}) and artifacts ({artifacts.data?.artifacts?.length || 0})
        </summary>
        <div class="tables">
        {steps.length ? (
          <table class="steps">
            <caption>Steps</caption>
            <thead>
              <tr>
                <th scope="col">Step</th>
                <th scope="col">Status</th>
                <th scope="col">Exit code</th>
                <th scope="col">Duration</th>
              </tr>
            </thead>
            <tbody>
              {steps.map((s) => (
                <tr key={s.name}>
                  <td>
                    <button type="button" class="link" onClick={() => showStep(s.name)}>
                      {s.name}
                    </button>
                  </td>
                  <td>
                    <Status status={s.status} />
                  </td>
                  <td>{s.exit_code ?? "—"}</td>
                  <td>{duration(s.duration_ms / 1000)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        {artifacts.data?.artifacts?.length ? (
          <table class="artifacts">
            <caption>Artifacts</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Size</th>
                <th scope="col">
                  <span class="sr-only">Download</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {artifacts.data.artifacts.map((a) => (
                <tr key={a.id}>
                  <td>{a.name}</td>
                  <td>{formatSize(a.file_size)}</td>
                  <td>
                    <Action
                      class="small"
                      aria-label={`Download ${a.name}`}
                      run={async () => {
                        const { download_url: url } = await post(`/v1/artifacts/${a.id}/download-link`);
                        window.location.assign(url);
                      }}
                    >
                      Download
                    </Action>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        </div>
      </details>
      ) : null}
      <div class="log-tools" role="toolbar" aria-label="Log">
        <form
          class="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            step(1);
          }}
        >
          <label for={searchId}>Search the log</label>
          <input
            id={searchId}
            type="search"
            value={searchText}
            onInput={(e) => setSearchText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && e.shiftKey) {
                e.preventDefault();
                step(-1);
              }
            }}
          />
          <button type="button" onClick={() => step(-1)} disabled={!matches.length} aria-label="Previous match">
            ↑
          </button>
          <button type="button" onClick={() => step(1)} disabled={!matches.length} aria-label="Next match">
            ↓
          </button>
          <span class="count" aria-live="polite" data-testid="match-count">
            {needle ? (matches.length ? `${matchIndex + 1} of ${matches.length}` : "no match") : ""}
          </span>
        </form>
        <button type="button" onClick={firstError}>
          First error
        </button>
        <button type="button" aria-pressed={follow ? "true" : "false"} onClick={() => setFollow(!follow)}>
          Follow
        </button>
        <button type="button" aria-pressed={prefs.wrap ? "true" : "false"} onClick={() => prefs.setWrap(!prefs.wrap)}>
          Wrap
        </button>
        <button type="button" aria-pressed={prefs.timestamps ? "true" : "false"} onClick={() => prefs.setTimestamps(!prefs.timestamps)}>
          Timestamps
        </button>
        <button type="button" onClick={() => foldAll(true)}>
          Fold steps
        </button>
        <button type="button" onClick={() => foldAll(false)}>
          Unfold steps
        </button>
        <button type="button" onClick={download} disabled={!model}>
          Download raw log
        </button>
        <span class="log-state" role="status" data-testid="log-state">
          {feed.live ? "● live" : feed.loading ? "loading…" : ""} {model ? `${model.length} lines` : ""} {note}
        </span>
      </div>
      <ErrorNote error={feed.error} />
      {model ? (
        <LogView
          model={model}
          version={feed.version + (model.version || 0)}
          wrap={prefs.wrap}
          timestamps={prefs.timestamps}
          follow={follow}
          onFollow={setFollow}
          needle={needle}
          current={matchIndex >= 0 ? matches[matchIndex] : null}
          target={target}
          scrollRequest={scrollRequest}
          onLineLink={onLineLink}
          onToggle={toggle}
        />
      ) : null}
    </section>
  );
}
