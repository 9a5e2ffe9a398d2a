// Work is never lost: every form that posts (unless it carries data-plain) is sent in the background, so that when the
// server refuses it (an answer with an error status: a refused search, a rule broken, too many requests) or cannot be
// reached, the page stays as it was — every field, the chosen photograph, the notes as typed — and the server's reason
// is shown in an alert beside the form. An accepted form goes where the server sends it (the server marks its redirect
// for this script: web/site.py FormRedirects), a download is saved, and any other page the server answers with is
// shown. Without this script the forms post as usual, and a refused one comes back with its text fields filled in.
(() => {
  "use strict";
  const FORM_HEADER = "Facetrail-Form", LOCATION_HEADER = "Facetrail-Location";

  function alertRegion(form) {
    const previous = form.previousElementSibling;
    if (previous && previous.classList.contains("form-alert")) return previous;
    const region = Object.assign(document.createElement("div"), {className: "error form-alert", tabIndex: -1});
    region.setAttribute("role", "alert");
    form.before(region);
    return region;
  }

  function showRefusal(form, nodes) {
    const region = alertRegion(form);
    region.replaceChildren(...nodes);
    region.scrollIntoView({block: "nearest"});
    region.focus({preventScroll: true});
  }

  function reasonOf(html, status) {
    // The reason as the server's page gives it: the alert of the re-rendered form, or of the error page.
    const page = new DOMParser().parseFromString(html, "text/html");
    const alert = page.querySelector("main .error[role=alert]");
    if (alert) {
      for (const script of alert.querySelectorAll("script")) script.remove();
      return [...alert.childNodes].map((node) => document.importNode(node, true));
    }
    return [Object.assign(document.createElement("p"), {textContent: `The server refused this (status ${status}).`})];
  }

  async function download(response) {
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (/filename="?([^";]+)"?/.exec(disposition) || [, "download"])[1];
    const link = Object.assign(document.createElement("a"), {href: URL.createObjectURL(await response.blob()), download: name});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
  }

  function bodyOf(form, submitter) {
    const data = new FormData(form, submitter);
    return form.enctype === "multipart/form-data" ? data : new URLSearchParams(data);
  }

  async function send(form, submitter) {
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(form.action, {
        method: "POST", body: bodyOf(form, submitter), credentials: "same-origin",
        headers: {"Accept": "text/html", [FORM_HEADER]: "1"},
      });
      const location = response.headers.get(LOCATION_HEADER);
      if (location) {
        window.location.assign(new URL(location, window.location.href));
        return;
      }
      if (response.ok && /attachment/i.test(response.headers.get("Content-Disposition") || "")) {
        await download(response);
        return;
      }
      const html = await response.text();
      if (!response.ok) {
        showRefusal(form, reasonOf(html, response.status));
        return;
      }
      document.open();  // a page the server answers with (a verification, a new account's first password)
      document.write(html);
      document.close();
    } catch (error) {
      showRefusal(form, [Object.assign(document.createElement("p"), {
        textContent: `The server could not be reached (${error.message}); what you entered is kept: try again.`})]);
    } finally {
      form.removeAttribute("aria-busy");
    }
  }

  // A field whose pattern is not met says what is expected in its data-pattern-message (an example, not the pattern).
  document.addEventListener("invalid", (event) => {
    const field = event.target;
    if (field.dataset && field.dataset.patternMessage && field.validity.patternMismatch) {
      field.setCustomValidity(field.dataset.patternMessage);
    }
  }, true);
  document.addEventListener("input", (event) => {
    if (event.target.dataset && event.target.dataset.patternMessage) event.target.setCustomValidity("");
  }, true);

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || !(form instanceof HTMLFormElement) || form.method !== "post" || "plain" in form.dataset
        || (form.target && form.target !== "_self")) return;
    event.preventDefault();
    if (form.getAttribute("aria-busy") !== "true") send(form, event.submitter);
  });
})();
