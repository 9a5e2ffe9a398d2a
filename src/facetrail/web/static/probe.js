// The search form's face picker. It shows the faces found in the chosen still, each with its quality and the reasons
// for a poor verdict, and lets the investigator choose one (click it, or its entry in the list) or drag a box around
// the face by hand, with the mouse or by typing its position. A small still is drawn enlarged to at least
// MIN_PREVIEW_WIDTH pixels across. Nothing is stored until the form is submitted. Without this script the form still
// works: the server searches the only face found, or says how to choose among several.
(() => {
  "use strict";
  const form = document.getElementById("search-form");
  if (!form) return;
  const file = form.elements.probe, faceField = form.elements.face, boxField = form.elements.face_box;
  const csrf = form.elements.csrf_token.value;
  const canvas = document.getElementById("probe-canvas"), help = document.getElementById("canvas-help");
  const list = document.getElementById("faces"), status = document.getElementById("faces-status");
  const clearBox = document.getElementById("clear-box");
  const byKeys = document.getElementById("box-by-keys"), boxSize = document.getElementById("box-size");
  const boxInputs = ["box-x", "box-y", "box-w", "box-h"].map((id) => document.getElementById(id));
  const context = canvas.getContext("2d");
  const MIN_PREVIEW_WIDTH = 320;
  let picture = null, scale = 1, faces = [], chosen = 0, drawn = null, drag = null;

  async function findFaces(box) {
    const body = new FormData();
    body.append("csrf_token", csrf);
    body.append("image", file.files[0]);
    if (box) body.append("face_box", box.map(Math.round).join(","));
    const response = await fetch("/search/faces", {method: "POST", body, credentials: "same-origin",
                                                  headers: {"Accept": "application/json"}});
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((answer.error && answer.error.message) || `the server answered ${response.status}`);
    return answer;
  }

  function draw() {
    context.drawImage(picture, 0, 0, canvas.width, canvas.height);
    const boxes = drawn ? [[drawn, 0]] : faces.map((face, index) => [face.box, index + 1]);
    for (const [box, number] of boxes) {
      const [x, y, w, h] = box.map((v) => v * scale);
      context.lineWidth = Math.max(2, canvas.width / 300);
      context.strokeStyle = drawn || number === chosen ? "#ffd600" : "#00b4ff";
      context.strokeRect(x, y, w, h);
      if (number) {
        context.fillStyle = context.strokeStyle;
        context.font = `bold ${Math.max(14, canvas.width / 40)}px sans-serif`;
        context.fillText(String(number), x + 4, y + Math.max(16, canvas.width / 35));
      }
    }
    if (drag && drag.end) {
      context.setLineDash([6, 4]);
      context.strokeStyle = "#ffd600";
      const [x, y, w, h] = rectangle(drag.start, drag.end).map((v) => v * scale);
      context.strokeRect(x, y, w, h);
      context.setLineDash([]);
    }
  }

  function rectangle(a, b) {
    return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]), Math.abs(a[1] - b[1])];
  }

  function describe(face, number) {
    const item = document.createElement("li");
    const quality = face.quality;
    const id = `face-${number}`;
    const input = Object.assign(document.createElement("input"), {type: "radio", name: "face-choice", id, value: number});
    input.checked = number === chosen;
    input.addEventListener("change", () => choose(number));
    const label = Object.assign(document.createElement("label"), {htmlFor: id});
    label.textContent = number ? `Face ${number}: quality ${quality.verdict}` : `The face in your box: quality ${quality.verdict}`;
    const badge = document.createElement("span");
    badge.className = `badge ${quality.verdict === "acceptable" ? "good" : "bad"}`;
    badge.textContent = quality.verdict;
    item.append(input, " ", label, " ", badge);
    if (quality.reasons.length) {
      const reasons = document.createElement("ul");
      for (const reason of quality.reasons) reasons.append(Object.assign(document.createElement("li"), {textContent: reason}));
      item.append(reasons);
    }
    item.className = number === chosen || !number ? "chosen" : "";
    return item;
  }

  function fillBoxInputs(box) {
    boxInputs.forEach((input, index) => { input.value = box ? String(Math.round(box[index])) : ""; });
  }

  function show(foundFaces, message) {
    list.replaceChildren(...foundFaces.map((face, index) => describe(face, drawn ? 0 : index + 1)));
    fillBoxInputs(drawn || (chosen && faces[chosen - 1] ? faces[chosen - 1].box : null));
    status.textContent = message;
    clearBox.hidden = !drawn;
    draw();
  }

  function choose(number) {
    chosen = number;
    faceField.value = String(number);
    boxField.value = "";
    show(faces, `Face ${number} of ${faces.length} chosen.`);
  }

  async function useBox(box) {
    drawn = box;
    boxField.value = box.map(Math.round).join(",");
    faceField.value = "";
    status.textContent = "Measuring the face in your box…";
    try {
      const answer = await findFaces(box);
      show(answer.faces, "The face in the box you drew will be searched.");
    } catch (error) {
      show([], `Could not measure the face in that box: ${error.message}`);
    }
  }

  file.addEventListener("change", async () => {
    faces = []; chosen = 0; drawn = null; faceField.value = ""; boxField.value = "";
    list.replaceChildren();
    canvas.hidden = help.hidden = byKeys.hidden = true;
    clearBox.hidden = true;
    if (!file.files.length) return;
    status.textContent = "Looking for faces…";
    try {
      const answer = await findFaces(null);
      picture = new Image();
      picture.src = answer.preview;
      await picture.decode();
      const enlarged = Math.max(1, MIN_PREVIEW_WIDTH / picture.naturalWidth);
      canvas.width = Math.round(picture.naturalWidth * enlarged);
      canvas.height = Math.round(picture.naturalHeight * enlarged);
      scale = canvas.width / answer.width;
      boxSize.textContent = `${answer.width} × ${answer.height} pixels`;
      boxInputs[0].max = boxInputs[2].max = String(answer.width);
      boxInputs[1].max = boxInputs[3].max = String(answer.height);
      canvas.hidden = help.hidden = byKeys.hidden = false;
      faces = answer.faces;
      if (faces.length === 1) {
        choose(1);
        return;
      }
      show(faces, faces.length
        ? `${faces.length} faces found. Choose the one to search.`
        : "No face was found. Drag a box around the face to search it, or give its position below the preview.");
    } catch (error) {
      status.textContent = `This photograph cannot be used: ${error.message}`;
    }
  });

  clearBox.addEventListener("click", () => {
    drawn = null;
    boxField.value = "";
    if (faces.length === 1) choose(1);
    else show(faces, faces.length ? `${faces.length} faces found. Choose the one to search.` : "No face was found.");
  });

  function typedBox() {
    for (const input of boxInputs) {
      if (!input.value || !input.reportValidity()) {
        input.focus();
        return;
      }
    }
    useBox(boxInputs.map((input) => Number(input.value)));
  }

  document.getElementById("use-box").addEventListener("click", typedBox);
  for (const input of boxInputs) {
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();  // Enter uses the box typed, it does not submit the search
      typedBox();
    });
  }

  // A phone cannot show a long option whole in its dropdown: the option chosen is written out in full beneath it.
  for (const select of form.querySelectorAll("select[data-chosen-text]")) {
    const chosenText = document.getElementById(select.dataset.chosenText);
    select.addEventListener("change", () => {
      chosenText.textContent = select.value ? select.selectedOptions[0].textContent : "";
    });
  }

  function pointIn(event) {
    const bounds = canvas.getBoundingClientRect();
    return [(event.clientX - bounds.left) * canvas.width / bounds.width / scale,
            (event.clientY - bounds.top) * canvas.height / bounds.height / scale];
  }

  canvas.addEventListener("pointerdown", (event) => {
    drag = {start: pointIn(event), end: null};
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    drag.end = pointIn(event);
    draw();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const end = pointIn(event), start = drag.start;
    drag = null;
    const box = rectangle(start, end);
    if (box[2] * scale >= 8 && box[3] * scale >= 8) {
      useBox(box);
      return;
    }
    const hit = faces.findIndex(({box: [x, y, w, h]}) => end[0] >= x && end[0] <= x + w && end[1] >= y && end[1] <= y + h);
    if (hit >= 0) {
      drawn = null;
      choose(hit + 1);
    } else {
      draw();
    }
  });
})();
