// The comparison of probe and candidate (the examiner's bench and the supervisor's dispute page), all client-side:
// one zoom for both faces (the pointer over either picks the area both show), each side's brightness, contrast,
// rotation and mirror (CSS filter and transform), an overlay of the two aligned face chips with an opacity slider and
// a flicker; and on the bench, keyboard shortcuts for the candidates and the decision form (never while typing).
(() => {
  "use strict";
  const slider = document.getElementById("zoom");
  if (!slider) return;
  const level = document.getElementById("zoom-level");
  const pictures = [...document.querySelectorAll(".compare .zoom img")];
  const toolsOf = (side) => document.querySelector(`.side-tools[data-side="${side}"]`);

  const apply = () => {
    level.textContent = `${slider.value}×`;
    for (const picture of pictures) {
      const tools = toolsOf(picture.dataset.side);
      const value = (tool) => tools.querySelector(`[data-tool="${tool}"]`);
      const mirror = value("flip").checked ? " scaleX(-1)" : "";
      picture.style.transform = `scale(${slider.value}) rotate(${value("rotate").value}deg)${mirror}`;
      picture.style.filter = `brightness(${value("brightness").value}%) contrast(${value("contrast").value}%)`;
    }
  };
  slider.addEventListener("input", apply);
  for (const tools of document.querySelectorAll(".side-tools")) {
    tools.addEventListener("input", apply);
    tools.querySelector('[data-tool="reset"]').addEventListener("click", () => {
      for (const input of tools.querySelectorAll("input[type=range]")) input.value = input.defaultValue;
      tools.querySelector('[data-tool="flip"]').checked = false;
      apply();
    });
  }
  for (const picture of pictures) {
    picture.addEventListener("pointermove", (event) => {
      const bounds = picture.getBoundingClientRect();
      const x = ((event.clientX - bounds.left) / bounds.width) * 100, y = ((event.clientY - bounds.top) / bounds.height) * 100;
      for (const each of pictures) each.style.transformOrigin = `${x}% ${y}%`;
    });
    picture.addEventListener("click", () => zoomBy(Number(slider.value) >= Number(slider.max) ? -Infinity : 1));
  }
  const zoomBy = (steps) => {
    slider.value = String(Math.min(Number(slider.max), Math.max(Number(slider.min), Number(slider.value) + steps)));
    apply();
  };

  // The overlay: the candidate's aligned face over the probe's, at the opacity chosen, or flickering between them.
  const overlay = document.querySelector(".overlay-view");
  const over = document.querySelector(".overlay img.over");
  const opacity = document.getElementById("overlay-opacity");
  const flicker = document.getElementById("flicker");
  let flickering = null;
  const showOpacity = () => { over.style.opacity = String(Number(opacity.value) / 100); };
  opacity.addEventListener("input", showOpacity);
  flicker.addEventListener("change", () => {
    clearInterval(flickering);
    flickering = null;
    if (flicker.checked) {
      overlay.open = true;
      flickering = setInterval(() => { over.style.opacity = over.style.opacity === "1" ? "0" : "1"; }, 500);
    } else {
      showOpacity();
    }
  });
  showOpacity();
  apply();

  // Keyboard shortcuts (the bench). Letters and digits act only outside text fields; Ctrl+Enter records the
  // decision from anywhere, and Escape leaves the notes.
  const form = document.getElementById("decision-form");
  const typing = (element) => element instanceof HTMLTextAreaElement || element instanceof HTMLSelectElement ||
    (element instanceof HTMLInputElement && !["radio", "checkbox", "range", "button", "submit"].includes(element.type));
  const features = [...document.querySelectorAll(".feature")];
  const findingKeys = {s: "similar", d: "dissimilar", v: "not_visible"};
  const answer = (finding) => {
    const inFocus = features.find((feature) => feature.contains(document.activeElement));
    const feature = inFocus || features.find((each) => !each.querySelector("input:checked"));
    if (!feature) return;
    feature.querySelector(`input[value="${finding}"]`).checked = true;
    const next = features[features.indexOf(feature) + 1];
    (next ? next.querySelector("input:checked") || next.querySelector("input") : feature.querySelector("input:checked")).focus();
  };
  const follow = (rel) => {
    const link = document.querySelector(`a[rel="${rel}"]`);
    if (link) window.location.assign(link.href);
  };
  document.addEventListener("keydown", (event) => {
    if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
      return;
    }
    if (event.key === "Escape" && typing(document.activeElement)) {
      document.activeElement.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    const key = event.key.toLowerCase();
    const conclusion = form && form.querySelector(`input[name="conclusion"][data-key="${event.key}"]`);
    let handled = true;
    if (key === "n") follow("next");
    else if (key === "p") follow("prev");
    else if (conclusion) { conclusion.checked = true; conclusion.focus(); }
    else if (form && key in findingKeys) answer(findingKeys[key]);
    else if (form && key === "t") form.querySelector("textarea").focus();
    else if (form && key === "r") form.requestSubmit();
    else if (key === "o") { overlay.open = !overlay.open; }
    else if (key === "f") { flicker.checked = !flicker.checked; flicker.dispatchEvent(new Event("change")); }
    else if (key === "+" || key === "=") zoomBy(1);
    else if (key === "-") zoomBy(-1);
    else handled = false;
    if (handled) event.preventDefault();
  });
})();
