"""The admin pages in a real browser: an admin's own account offers no deactivation (and a crafted request is
refused), the users page fits a 390-pixel phone, the navigation leads to the enrolment jobs, the enrolment form lists
the manifest's columns as the command line reads them, a job shows its rejected photographs as thumbnails beside
their reasons, and no dropdown or date is cut or wrapped."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from facetrail.gallery.manifest import MANIFEST_COLUMNS
from tests.fixtures.browser import Visit, needs_chromium
from tests.fixtures.images import jpeg

pytestmark = [needs_chromium, pytest.mark.xdist_group("browser")]

PHONE = {"width": 390, "height": 844}
GALLERY = "admin-pages"
JOB_TIMEOUT_MS = 180_000
FITS_THE_WIDTH = "document.documentElement.scrollWidth <= window.innerWidth"
CUT_OR_WRAPPED = r"""() => {
  // the selects narrower than their longest option, and the dates ('YYYY-MM-DD HH:MM UTC') drawn on two lines
  const probe = document.createElement("span");
  probe.style.cssText = "position: absolute; visibility: hidden; white-space: pre";
  document.body.append(probe);
  const cut = [...document.querySelectorAll("select")].filter(select => {
    const style = getComputedStyle(select);
    probe.style.font = style.font;
    const widest = Math.max(...[...select.options].map(option => { probe.textContent = option.text; return probe.getBoundingClientRect().width; }));
    return select.clientWidth < widest + parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
  }).map(select => select.id || select.name);
  probe.remove();
  const wrapped = [];
  const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) wrapped.push(match[0]);
    }
  }
  return {cut, wrapped};
}"""


@pytest.fixture
def admin(site, browser):
    base, passwords, _ = site
    visit = Visit(browser, base, "admin", passwords["admin"])
    yield visit
    visit.context.close()


def test_an_admin_is_not_offered_to_deactivate_themselves_and_a_crafted_request_is_refused(admin, site):
    page = admin.go("/admin/users")
    own = page.locator("tr", has=page.get_by_role("rowheader", name="admin", exact=True))
    expect(own).to_contain_text("your own account")
    expect(own.get_by_role("button")).to_have_count(0)  # neither Deactivate nor Save roles
    other = page.locator("tr", has=page.get_by_role("rowheader", name="ivan", exact=True))
    expect(other.get_by_role("button", name="Deactivate ivan")).to_be_visible()
    admin.shot("admin-users-own-row")
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    crafted = page.request.post(admin.base + "/admin/users/admin/active", form={"csrf_token": token, "active": "false"})
    assert crafted.status == 403 and "no one may disable their own account" in crafted.text()
    crafted = page.request.post(admin.base + "/admin/users/admin/roles", form={"csrf_token": token, "roles": "auditor"})
    assert crafted.status == 403 and "no one may change their own roles" in crafted.text()
    page = admin.go("/admin/users")
    expect(page.locator("tr", has=page.get_by_role("rowheader", name="admin", exact=True))).to_contain_text("active")
    _, passwords, _ = site
    Visit(admin.page.context.browser, admin.base, "admin", passwords["admin"]).log_out()  # still active: logs in


def test_the_users_page_fits_a_phone(admin):
    admin.page.set_viewport_size(PHONE)
    page = admin.go("/admin/users")
    assert page.evaluate(FITS_THE_WIDTH), page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    deactivate = page.get_by_role("button", name="Deactivate ivan")
    deactivate.scroll_into_view_if_needed()
    box = deactivate.bounding_box()
    assert box and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box
    admin.shot("admin-users-phone")
    for path in ("/admin/galleries", "/admin/jobs", "/admin/policy", f"/admin/galleries/sample"):
        page = admin.go(path)
        assert page.evaluate(FITS_THE_WIDTH), (path, page.evaluate("[document.documentElement.scrollWidth, innerWidth]"))


def test_the_navigation_leads_admins_to_the_enrolment_jobs(admin):
    page = admin.go("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Enrolment jobs").click()
    expect(page.get_by_role("heading", name="Enrolment jobs", level=1)).to_be_visible()
    assert page.url.endswith("/admin/jobs")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Enrolment jobs")).to_have_attribute(
        "aria-current", "page")


def test_the_enrolment_form_lists_the_manifests_columns_as_the_command_line_reads_them(admin):
    page = admin.go("/admin/galleries/sample")
    listed = page.locator("#manifest-columns dt code").all_inner_texts()
    assert listed == [name for column in MANIFEST_COLUMNS for name in (column.name, column.alias) if name]
    for column in MANIFEST_COLUMNS:
        expect(page.locator("#manifest-columns")).to_contain_text(column.meaning)
    admin.shot("admin-gallery-manifest")


def test_a_job_shows_its_rejected_photographs_as_thumbnails_beside_their_reasons(admin, site, faces, tmp_path):
    page = admin.go("/admin/galleries")
    page.get_by_label("Name").fill(GALLERY)
    page.get_by_label("Allowed sources").fill("booking")
    page.get_by_role("button", name="Create gallery").click()
    expect(page.get_by_role("heading", name=f"Gallery {GALLERY}")).to_be_visible()
    scenery = io.BytesIO()
    Image.linear_gradient("L").resize((400, 300)).convert("RGB").save(scenery, format="JPEG")
    files = {"face.jpg": jpeg(faces["biden.jpg"], 500), "scenery.jpg": scenery.getvalue(),
             "broken.jpg": b"\xff\xd8\xff this is not a JPEG"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.get_by_label("Photographs", exact=True).set_input_files([str(tmp_path / name) for name in files])
    page.locator("#enrol-subject").fill("AP-1")
    page.locator("#enrol-source").select_option("booking")
    page.get_by_role("button", name="Start enrolment").click()
    expect(page.get_by_role("heading", name=re.compile(r"Enrolment job \d+"))).to_be_visible()
    expect(page.locator("#job")).to_have_attribute("data-state", "finished", timeout=JOB_TIMEOUT_MS)

    scenery_row = page.locator("tr", has=page.get_by_role("rowheader", name="scenery.jpg"))
    thumbnail = scenery_row.get_by_role("img", name="The rejected photograph scenery.jpg")
    expect(thumbnail).not_to_have_js_property("naturalWidth", 0)
    expect(scenery_row).to_contain_text("rejected")
    assert "face" in scenery_row.inner_text().lower()  # the reason, beside the thumbnail
    broken_row = page.locator("tr", has=page.get_by_role("rowheader", name="broken.jpg"))
    expect(broken_row).to_contain_text("no thumbnail: not readable as an image")
    face_row = page.locator("tr", has=page.get_by_role("rowheader", name="face.jpg"))
    expect(face_row).to_contain_text("enrolled")
    expect(face_row.get_by_role("img")).to_have_count(0)  # enrolled photographs are not shown to admins
    admin.shot("admin-job-rejected-thumbnails")
    job_url, source = page.url, thumbnail.get_attribute("src")

    base, passwords, _ = site
    ivan = Visit(admin.page.context.browser, base, "ivan", passwords["ivan"])
    assert ivan.page.request.get(base + source).status == 403
    ivan.log_out()
    alma = Visit(admin.page.context.browser, base, "alma", passwords["alma"])
    alma.go("/oversight/audit?action=rejected_photo_viewed&limit=100")
    expect(alma.page.locator("table.audit")).to_contain_text(GALLERY)
    alma.log_out()
    admin.page.set_viewport_size(PHONE)
    admin.page.goto(job_url)
    assert admin.page.evaluate(FITS_THE_WIDTH)
    row = admin.page.locator("tr", has=admin.page.get_by_role("rowheader", name="scenery.jpg"))
    for cell in (row.get_by_role("img"), row.locator('td[data-label="Reason"]')):  # both in view, one under the other
        box = cell.bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box
    admin.shot("admin-job-phone")


@pytest.mark.parametrize("path", ["/admin/users", "/admin/galleries/sample", "/admin/jobs", "/admin/policy"])
def test_no_dropdown_is_cut_and_no_date_wraps(admin, path):
    for viewport in ({"width": 1280, "height": 900}, PHONE):
        admin.page.set_viewport_size(viewport)
        page = admin.go(path)
        found = page.evaluate(CUT_OR_WRAPPED)
        assert found == {"cut": [], "wrapped": []}, (path, viewport, found)
    admin.shot("admin-phone-" + path.strip("/").replace("/", "-").removeprefix("admin-"))
