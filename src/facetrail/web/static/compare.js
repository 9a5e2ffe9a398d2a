// Zoom for the side-by-side comparison: one slider scales both photographs together, and the pointer's position
// over either one picks the area both show, so the same facial feature can be compared in each.
(() => {
  "use strict";
  const slider = document.getElementById("zoom");
  if (!slider) return;
  const level = document.getElementById("zoom-level");
  const pictures = [...document.querySelectorAll(".compare .zoom img")];
  const apply = () => {
    level.textContent = `${slider.value}×`;
    for (const picture of pictures) picture.style.transform = `scale(${slider.value})`;
  };
  slider.addEventListener("input", apply);
  for (const picture of pictures) {
    picture.addEventListener("pointermove", (event) => {
      const bounds = picture.getBoundingClientRect();
      const x = ((event.clientX - bounds.left) / bounds.width) * 100, y = ((event.clientY - bounds.top) / bounds.height) * 100;
      for (const each of pictures) each.style.transformOrigin = `${x}% ${y}%`;
    });
    picture.addEventListener("click", () => {
      slider.value = Number(slider.value) >= Number(slider.max) ? slider.min : String(Number(slider.value) + 1);
      apply();
    });
  }
})();
