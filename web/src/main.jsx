import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { get, onSignedOut, post } from "./api.js";
import { closeEvents, useEvents } from "./events.js";
import { can, Link, navigate, useLocation } from "./ui.jsx";
import { SignIn, OidcCallback } from "./pages/signin.jsx";
import { Dashboard } from "./pages/dashboard.jsx";
import { BuildsPage } from "./pages/builds.jsx";
import { BuildPage } from "./pages/build.jsx";
import { RunnersPage } from "./pages/runners.jsx";
import { ProjectsPage, ProjectPage, PipelinePage } from "./pages/projects.jsx";
import { PeoplePage, TokensPage, AuditPage, SettingsPage } from "./pages/admin.jsx";

const NAV = [
  { href: "/", text: "Dashboard" },
  { href: "/builds", text: "Builds" },
  { href: "/projects", text: "Projects" },
  { href: "/runners", text: "Runners", need: "runners" },
  { href: "/people", text: "People", need: "users" },
  { href: "/tokens", text: "API tokens", need: "apiTokens" },
  { href: "/audit", text: "Audit log", need: "audit" },
  { href: "/settings", text: "Settings", need: "settings" },
];

function route(path, user) {
  let m;
  if (path === "/") return <Dashboard user={user} />;
  if (path === "/builds") return <BuildsPage user={user} />;
  if ((m = path.match(/^\/builds\/([^/]+)$/))) return <BuildPage user={user} id={m[1]} />;
  if (path === "/projects") return <ProjectsPage user={user} />;
  if ((m = path.match(/^\/projects\/([^/]+)$/))) return <ProjectPage user={user} id={m[1]} />;
  if ((m = path.match(/^\/pipelines\/([^/]+)$/))) return <PipelinePage user={user} id={m[1]} />;
  for (const item of NAV) {
    if (item.href === path && item.need && !can(user, item.need)) return <NotAllowed />;
  }
  if (path === "/runners") return <RunnersPage user={user} />;
  if (path === "/people") return <PeoplePage user={user} />;
  if (path === "/tokens") return <TokensPage user={user} />;
  if (path === "/audit") return <AuditPage user={user} />;
  if (path === "/settings") return <SettingsPage user={user} />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page here. <Link href="/">Go to the dashboard</Link>.
      </p>
    </section>
  );
}

function NotAllowed() {
  return (
    <section>
      <h1>Not available</h1>
      <p>Your role does not give access to this page.</p>
    </section>
  );
}

function Shell({ user, onSignOut, children, path }) {
  // The events stream ended for authorization: if the session is gone, show sign-in.
  useEvents((type) => {
    if (type === "ended") get("/v1/users/me").catch(() => {});
  });
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          oore
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((item) => !item.need || can(user, item.need)).map((item) => {
              const active = item.href === "/" ? path === "/" : path.startsWith(item.href);
              return (
                <li key={item.href}>
                  <Link href={item.href} aria-current={active ? "page" : undefined}>
                    {item.text}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
        <div class="who">
          <span title={user.email}>
            {user.display_name || user.email} <span class="role">({user.role.replace("_", " ")})</span>
          </span>
          <button type="button" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}

function App() {
  const location = useLocation();
  const [session, setSession] = useState({ user: null, checked: false });

  const refresh = () =>
    get("/v1/users/me", { quiet: true }).then(
      ({ user }) => setSession({ user, checked: true }),
      () => setSession({ user: null, checked: true }),
    );

  useEffect(() => {
    refresh();
    return onSignedOut(() => {
      closeEvents();
      setSession({ user: null, checked: true });
    });
  }, []);

  const signOut = async () => {
    try {
      await post("/v1/auth/logout", {}, { quiet: true });
    } catch {
      /* the session may already be gone */
    }
    closeEvents();
    setSession({ user: null, checked: true });
    navigate("/", { replace: true });
  };

  const path = location.pathname;
  if (path === "/auth/callback") return <OidcCallback onSignedIn={refresh} />;
  if (!session.checked) return <p class="loading">Loading…</p>;
  if (!session.user) return <SignIn onSignedIn={refresh} />;
  return (
    <Shell user={session.user} onSignOut={signOut} path={path}>
      {route(path, session.user)}
    </Shell>
  );
}

render(<App />, document.getElementById("app"));
