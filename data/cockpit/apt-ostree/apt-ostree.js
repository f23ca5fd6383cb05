/* The Cockpit page of apt-ostree: apt-ostreed's D-Bus API (docs/dbus.md) through
 * cockpit.js. Every change is a daemon transaction: create it (polkit decides),
 * subscribe to its signals, Start() it, follow it until Finished. */
"use strict";

(function () {
    const BUS_NAME = "org.aptostree.dev";
    const SYSROOT = "/org/aptostree/dev/Sysroot";
    const SYSROOT_IFACE = "org.aptostree.dev.Sysroot";
    const OS_IFACE = "org.aptostree.dev.OS";
    const TX_IFACE = "org.aptostree.dev.Transaction";
    const LOG_LINES = 200;

    // With administrative access the bridge acts as root (no polkit); otherwise
    // polkit decides for the logged-in user.
    const client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });

    const state = {
        status: null, // GetStatus's document (apt-ostree status --json)
        booted: false,
        sysrootPath: "",
        osPath: "/",
        tx: null, // our transaction: {path, title, task, percent, lines, done, error}
        kargs: null, // GetKernelArgs of the deployment a change starts from
        diffKey: null, // the deployments the diff choices were made for
    };

    // The classes of the PatternFly that Cockpit's stylesheet (../system/overview.css,
    // loaded before this script) is: "pf-" for PatternFly 4 (pf-c-card, Cockpit 287),
    // "pf-v6-" for PatternFly 6 (pf-v6-c-card, Cockpit 337). Modifiers (pf-m-*) have
    // no version.
    const PF = (() => {
        for (const sheet of document.styleSheets) {
            if (!sheet.href || !sheet.href.endsWith("/system/overview.css")) continue;
            try {
                for (const rule of sheet.cssRules) {
                    const m = /\.pf-(v\d+)-/.exec(rule.selectorText || "");
                    if (m) return "pf-" + m[1] + "-";
                }
            } catch (ex) {
                console.warn("cannot read", sheet.href, ex);
            }
        }
        return "pf-";
    })();

    function pf(classes) {
        return PF === "pf-" ? classes : classes.replace(/(^|\s)pf-([clu])-/g, "$1" + PF + "$2-");
    }

    function $(id) {
        return document.getElementById(id);
    }

    function el(tag, attrs, ...children) {
        const node = document.createElement(tag);
        for (const [key, value] of Object.entries(attrs || {})) {
            if (key === "class") node.className = pf(value);
            else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
            else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
        }
        for (const child of children.flat()) {
            if (child === null || child === undefined || child === false) continue;
            node.append(typeof child === "string" ? document.createTextNode(child) : child);
        }
        return node;
    }

    function label(text, color) {
        return el("span", { class: "pf-c-label pf-m-" + color, "data-label": text.toLowerCase() },
                  el("span", { class: "pf-c-label__content" }, text));
    }

    function button(text, onclick, kind) {
        return el("button", { class: "pf-c-button pf-m-" + (kind || "secondary"), type: "button", onclick }, text);
    }

    function alert(kind, title, id, ...body) {
        return el("div", { class: "pf-c-alert pf-m-inline pf-m-" + kind, id },
                  el("p", { class: "pf-c-alert__title" }, title),
                  body.length ? el("div", { class: "pf-c-alert__description" }, ...body) : null);
    }

    function when(timestamp) {
        return timestamp ? new Date(timestamp * 1000).toISOString().replace(/\.\d+Z$/, "Z") : "";
    }

    function pkg(p) {
        return p[0] + " " + p[1];
    }

    // -- errors ---------------------------------------------------------------

    function showError(message) {
        // As the CLI prints it: polkit's refusal is "error: not authorized: ACTION (...)".
        $("alerts").replaceChildren(
            alert("danger", "error: " + message, "error", button("Dismiss", () => $("alerts").replaceChildren(), "link")));
    }

    function clearError() {
        $("alerts").replaceChildren();
    }

    // -- status ---------------------------------------------------------------

    async function refresh() {
        try {
            const [doc] = await client.call(SYSROOT, SYSROOT_IFACE, "GetStatus", [], { type: "" });
            state.status = JSON.parse(doc);
            const props = await client.call(SYSROOT, "org.freedesktop.DBus.Properties", "GetAll",
                                            [SYSROOT_IFACE], { type: "s" });
            const values = props[0];
            state.booted = values.Booted.v;
            state.sysrootPath = values.Path.v;
            state.osPath = values.DefaultOS.v;
            const [kargs] = await client.call(state.osPath, OS_IFACE, "GetKernelArgs", [{}], { type: "a{sv}" });
            // ostree= is the boot loader's business, never the user's: not shown for editing.
            state.kargs = kargs.split(/\s+/).filter(k => k && !k.startsWith("ostree=")).join(" ");
        } catch (ex) {
            $("system").textContent = "Cannot reach apt-ostreed: " + ex.message;
            return;
        }
        render();
    }

    function render() {
        const status = state.status;
        const deployments = status.deployments;
        const osname = deployments.length ? deployments[0].osname : "";
        $("system").textContent = state.booted
            ? "apt-ostree · " + osname + " · booted system"
            : "apt-ostree · " + osname + " · offline sysroot " + state.sysrootPath +
              " (changes are deployed directly; the default deployment is what it boots next)";
        renderRebootNeeded(deployments);
        renderTransaction();
        renderUpdate(status["cached-update"]);
        renderDeployments(deployments);
        renderDiffChoices(deployments);
        renderPackages(deployments);
        if (document.activeElement !== $("kargs")) $("kargs").value = state.kargs || "";
        const busy = Boolean(status.transaction) || Boolean(state.tx && !state.tx.done);
        for (const b of document.querySelectorAll("#check, #upgrade, #rollback, #cleanup-pending, " +
                                                  "#cleanup-rollback, #cleanup-base, #install-name, " +
                                                  "#kargs-apply, .aos-row button"))
            b.disabled = busy;
        $("rollback").disabled = busy || deployments.length < 2;
    }

    function renderRebootNeeded(deployments) {
        let old = $("reboot-needed");
        if (old) old.remove();
        const booted = deployments.find(d => d.booted);
        const staged = deployments.find(d => d.staged);
        let text = null;
        if (staged && staged["finalization-locked"])
            text = "A deployment is staged but locked: a reboot starts it only after it is finalized (apt-ostree finalize-deployment).";
        else if (staged)
            text = "The staged deployment " + (staged.version || staged.checksum.slice(0, 12)) + " starts at the next boot.";
        else if (booted && deployments[0] !== booted)
            text = "The next boot starts " + (deployments[0].version || deployments[0].checksum.slice(0, 12)) +
                   " instead of the running deployment.";
        if (text === null) return;
        const reboot = state.booted
            ? button("Reboot now", () => cockpit.spawn(["systemctl", "reboot"], { superuser: "require", err: "message" })
                .catch(ex => showError(ex.message)), "primary")
            : null;
        old = alert("warning", "Reboot needed", "reboot-needed", el("p", {}, text), reboot);
        $("transaction").before(old);
    }

    function renderUpdate(update) {
        const body = $("update-body");
        if (!update) {
            body.replaceChildren(el("p", { id: "no-update" },
                                    "No update known. Check for updates fetches the newest commit's metadata."));
            $("upgrade").textContent = "Upgrade";
            return;
        }
        const diff = update.diff || {};
        const counts = [["upgraded", "upgraded"], ["downgraded", "downgraded"], ["removed", "removed"], ["added", "added"]]
            .filter(([key]) => (diff[key] || []).length)
            .map(([key, word]) => diff[key].length + " " + word);
        body.replaceChildren(
            descriptionList([
                ["Version", (update.version || "") + (update.timestamp ? " (" + when(update.timestamp) + ")" : "")],
                ["Commit", el("span", { class: "aos-mono" }, update.checksum)],
                ["Origin", update.origin || ""],
                ["Packages", counts.join(", ") || "no package changes"],
                ["State", update.staged ? "staged: it starts at the next boot" : "not deployed yet"],
            ], "available-update"),
            diffTable(diff));
        $("upgrade").textContent = "Download and stage the update";
    }

    function descriptionList(rows, id) {
        return el("dl", { class: "pf-c-description-list pf-m-horizontal pf-m-compact", id },
                  rows.filter(r => r[1] !== null && r[1] !== "" && !(Array.isArray(r[1]) && !r[1].length))
                      .map(([term, value]) => el("div", { class: "pf-c-description-list__group", "data-term": term },
                                                 el("dt", { class: "pf-c-description-list__term" }, term),
                                                 el("dd", { class: "pf-c-description-list__description" },
                                                    Array.isArray(value) ? value.join(" ") : value))));
    }

    function renderDeployments(deployments) {
        $("deployments").replaceChildren(...deployments.map((d, index) => {
            const labels = [];
            if (d.booted) labels.push(label("Booted", "blue"));
            if (d.staged) labels.push(label("Staged", "orange"));
            if (d["finalization-locked"]) labels.push(label("Locked", "red"));
            if (index === 0 && !d.booted) labels.push(label("Default", "green"));
            if (d.pinned) labels.push(label("Pinned", "purple"));
            const replaced = d["base-local-replacements"].map(r => r[0] + " " + r[1] + " → " + r[2]);
            const local = d["requested-local-packages"];
            return el("li", { class: "aos-deployment", "data-checksum": d.checksum, "data-index": String(index) },
                      el("h3", { class: "pf-c-title pf-m-md" }, d.version || d.checksum.slice(0, 12), ...labels),
                      descriptionList([
                          ["Time", when(d.timestamp)],
                          ["Origin", d.origin || ""],
                          ["Commit", el("span", { class: "aos-mono" }, d.checksum)],
                          ["Base commit", d["base-checksum"] ? el("span", { class: "aos-mono" }, d["base-checksum"]) : ""],
                          ["Layered packages", d["requested-packages"]],
                          ["Local packages", local],
                          ["Removed base packages", d["requested-base-removals"]],
                          ["Replaced base packages", replaced],
                          ["Kernel arguments", el("span", { class: "aos-mono" }, d["kernel-arguments"].join(" "))],
                      ]));
        }));
        const rollbackTarget = deployments.length > 1 ? deployments[1] : null;
        $("rollback").title = rollbackTarget ? "Make " + (rollbackTarget.version || rollbackTarget.checksum.slice(0, 12)) + " the default" : "";
    }

    // -- package diff (DbDiff) ------------------------------------------------

    function renderDiffChoices(deployments) {
        // New choices (and the default pair: the second deployment to the first)
        // only when the deployments changed, so that a choice survives a refresh.
        const key = deployments.map(d => d.checksum).join(" ");
        if (key === state.diffKey) return;
        state.diffKey = key;
        const options = () => deployments.map((d, i) => el("option", { value: d.checksum },
                                                             (d.version || d.checksum.slice(0, 12)) + " (" + i + ")"));
        $("diff-from").replaceChildren(...options());
        $("diff-to").replaceChildren(...options());
        $("diff-from").value = (deployments[1] || deployments[0] || {}).checksum || "";
        $("diff-to").value = (deployments[0] || {}).checksum || "";
        $("diff").replaceChildren();
    }

    function diffTable(diff) {
        const rows = [
            ...(diff.upgraded || []).map(([a, b]) => ["upgraded", a[0], a[1], b[1]]),
            ...(diff.downgraded || []).map(([a, b]) => ["downgraded", a[0], a[1], b[1]]),
            ...(diff.removed || []).map(p => ["removed", p[0], p[1], ""]),
            ...(diff.added || []).map(p => ["added", p[0], "", p[1]]),
        ];
        if (!rows.length) return el("p", { class: "aos-empty" }, "No package changes.");
        return el("table", { class: "aos-diff" },
                  el("thead", {}, el("tr", {}, ["Change", "Package", "From", "To"].map(h => el("th", {}, h)))),
                  el("tbody", {}, rows.map(r => el("tr", { "data-kind": r[0] },
                                                  r.map(c => el("td", {}, c))))));
    }

    async function showDiff(event) {
        event.preventDefault();
        clearError();
        try {
            const [doc] = await client.call(SYSROOT, SYSROOT_IFACE, "DbDiff",
                                            [$("diff-from").value, $("diff-to").value, {}], { type: "ssa{sv}" });
            $("diff").replaceChildren(diffTable(JSON.parse(doc).diff));
        } catch (ex) {
            showError(ex.message);
        }
    }

    // -- layered packages, search ---------------------------------------------

    function renderPackages(deployments) {
        // Changes start from the booted deployment (offline: the default one).
        const base = deployments.find(d => d.booted) || deployments[0];
        const names = base ? base["requested-packages"] : [];
        $("layered").replaceChildren(...(names.length
            ? names.map(name => el("li", { class: "aos-row", "data-package": name }, name,
                                   button("Uninstall", () => transact("Uninstalling " + name, "PkgChange",
                                                                       [[], [name], {}], "asasa{sv}"))))
            : [el("li", { class: "aos-empty" }, "No layered packages.")]));
    }

    async function search(event) {
        event.preventDefault();
        clearError();
        const terms = $("search-terms").value.trim().split(/\s+/).filter(Boolean);
        if (!terms.length) return;
        $("search-results").replaceChildren(el("li", {}, "Searching…"));
        try {
            const [doc] = await client.call(state.osPath, OS_IFACE, "Search", [terms], { type: "as" });
            const found = JSON.parse(doc);
            $("search-results").replaceChildren(...(found.length
                ? found.map(([name, version, summary]) => el("li", { class: "aos-row", "data-package": name },
                                                              el("span", {}, el("strong", {}, name), " " + version + " — " + summary),
                                                              button("Install", () => install(name))))
                : [el("li", {}, "No package matches.")]));
        } catch (ex) {
            $("search-results").replaceChildren();
            showError(ex.message);
        }
    }

    function install(name) {
        return transact("Installing " + name, "PkgChange", [[name], [], {}], "asasa{sv}");
    }

    // -- kernel arguments -----------------------------------------------------

    function applyKargs(event) {
        event.preventDefault();
        const old = (state.kargs || "").split(/\s+/).filter(Boolean);
        const wanted = $("kargs").value.split(/\s+/).filter(Boolean);
        const remove = old.filter(k => !wanted.includes(k));
        const add = wanted.filter(k => !old.includes(k));
        if (!remove.length && !add.length) {
            showError("the kernel arguments are unchanged");
            return;
        }
        transact("Changing kernel arguments", "KernelArgs", [add, remove, {}], "asasa{sv}");
    }

    // -- transactions ---------------------------------------------------------

    async function transact(title, method, args, type) {
        clearError();
        let path;
        try {
            [path] = await client.call(state.osPath, OS_IFACE, method, args, { type });
        } catch (ex) {
            // Refused before anything was created: polkit's no, Busy, a bad request.
            showError(ex.message);
            await refresh();
            return;
        }
        const tx = { path, title, task: "", percent: null, lines: [], done: false, error: null, cancelling: false };
        state.tx = tx;
        // Signals go to the caller alone: subscribe before Start().
        tx.subscription = client.subscribe({ path, interface: TX_IFACE }, (_path, _iface, signal, sargs) =>
            onSignal(tx, signal, sargs));
        renderTransaction();
        render();
        try {
            await client.call(path, TX_IFACE, "Start", [], { type: "" });
        } catch (ex) {
            finish(tx, false, ex.message);
        }
    }

    function onSignal(tx, signal, args) {
        if (tx.done) return;
        if (signal === "TaskBegin") {
            tx.task = args[0];
            tx.percent = null;
            tx.lines.push(args[0]);
        } else if (signal === "TaskEnd") {
            tx.lines.push(args[0]);
            tx.percent = null;
        } else if (signal === "PercentProgress") {
            tx.task = args[0];
            tx.percent = args[1];
        } else if (signal === "Message" || signal === "Info") {
            tx.lines.push(args[0]);
        } else if (signal === "Finished") {
            finish(tx, args[0], args[1]);
            return;
        }
        tx.lines.splice(0, Math.max(0, tx.lines.length - LOG_LINES));
        renderTransaction();
    }

    function finish(tx, success, error) {
        if (tx.done) return;
        tx.done = true;
        tx.error = success ? null : error;
        if (tx.subscription) tx.subscription.remove();
        if (!success) showError(error);
        refresh();
    }

    async function cancel(path) {
        try {
            await client.call(path, TX_IFACE, "Cancel", [], { type: "" });
            if (state.tx && state.tx.path === path) {
                state.tx.cancelling = true;
                renderTransaction();
            }
        } catch (ex) {
            showError(ex.message);
        }
    }

    function renderTransaction() {
        const box = $("transaction");
        const tx = state.tx;
        const other = state.status && state.status.transaction;
        if (tx && !tx.done) {
            const percent = tx.percent === null ? null : Math.max(0, Math.min(100, tx.percent));
            box.replaceChildren(el("article", { class: "pf-c-card", id: "progress", "data-path": tx.path },
                el("div", { class: "pf-c-card__title" }, el("h2", { class: "pf-c-title pf-m-lg" }, tx.title)),
                el("div", { class: "pf-c-card__body" },
                   el("div", { class: "pf-c-progress" + (percent === null ? " pf-m-sm" : ""), id: "progress-bar" },
                      el("div", { class: "pf-c-progress__description", id: "progress-task" }, tx.task || "Starting…"),
                      el("div", { class: "pf-c-progress__status" },
                         el("span", { class: "pf-c-progress__measure" }, percent === null ? "" : percent + "%")),
                      el("div", { class: "pf-c-progress__bar", role: "progressbar", "aria-valuemin": "0",
                                  "aria-valuemax": "100", "aria-valuenow": percent === null ? null : String(percent) },
                         el("div", { class: "pf-c-progress__indicator", style: "width:" + (percent === null ? 100 : percent) + "%" }))),
                   el("div", { class: "aos-log", id: "progress-log" }, tx.lines.join("\n"))),
                el("div", { class: "pf-c-card__footer aos-actions" },
                   el("button", { class: "pf-c-button pf-m-secondary", type: "button", id: "cancel",
                                  disabled: tx.cancelling, onclick: () => cancel(tx.path) },
                      tx.cancelling ? "Cancelling…" : "Cancel"))));
            const log = $("progress-log");
            log.scrollTop = log.scrollHeight;
        } else if (other) {
            // Someone else's transaction: its progress goes to its caller alone.
            box.replaceChildren(alert("info", "Busy: " + other.command + " by pid " + other.caller.pid, "busy",
                                      button("Cancel it", () => cancel(other.path))));
        } else if (tx && tx.done && !tx.error) {
            box.replaceChildren(alert("success", tx.title + ": done", "done"));
        } else {
            box.replaceChildren();
        }
    }

    // -- wiring ---------------------------------------------------------------

    function cleanup(what, title) {
        return () => transact(title, "Cleanup", [what, {}], "asa{sv}");
    }

    document.addEventListener("DOMContentLoaded", () => {
        for (const node of document.querySelectorAll("[class*='pf-']")) node.className = pf(node.className);
        $("check").addEventListener("click", () => transact("Checking for updates", "Upgrade",
                                                             [{ check: { t: "b", v: true } }], "a{sv}"));
        $("upgrade").addEventListener("click", () => transact("Upgrading", "Upgrade", [{}], "a{sv}"));
        $("rollback").addEventListener("click", () => transact("Rolling back", "Rollback", [{}], "a{sv}"));
        $("cleanup-pending").addEventListener("click", cleanup(["pending"], "Removing the pending deployment"));
        $("cleanup-rollback").addEventListener("click", cleanup(["rollback"], "Removing the rollback deployment"));
        $("cleanup-base").addEventListener("click", cleanup(["base", "repomd"], "Cleaning up cached data"));
        $("diff-form").addEventListener("submit", showDiff);
        $("search-form").addEventListener("submit", search);
        $("install-name").addEventListener("click", () => {
            const name = $("search-terms").value.trim();
            if (name) install(name);
        });
        $("kargs-form").addEventListener("submit", applyKargs);
        // The active transaction changes (ours or another client's): read the status again.
        client.subscribe({ path: SYSROOT, interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged" },
                         () => refresh());
        refresh();
    });
})();
