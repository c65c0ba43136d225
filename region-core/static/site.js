// cityboard: progressive enhancement only; every page works without it.
// On a listing, the "Load more" link (a[rel=next]) becomes infinite
// scroll: the next page is fetched as HTML, its articles appended to the
// feed, the link moved on, the live region told, and the address bar given
// the page's URL so that Back returns to the same place.
(function () {
  "use strict";
  var feed = document.getElementById("results");
  var status = document.getElementById("feed-status");
  if (!feed || !status || !window.fetch || !window.DOMParser) return;
  var loading = false;

  function nextLink() { return document.querySelector("a[rel=next]"); }

  function load() {
    var link = nextLink();
    if (!link || loading) return;
    loading = true;
    feed.setAttribute("aria-busy", "true");
    var url = link.href;
    fetch(url, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (res) {
        if (!res.ok) throw new Error("status " + res.status);
        return res.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var articles = doc.querySelectorAll("#results > article");
        var count = feed.querySelectorAll(":scope > article").length;
        for (var i = 0; i < articles.length; i++) {
          feed.appendChild(document.importNode(articles[i], true));
        }
        var next = doc.querySelector("a[rel=next]");
        if (next) {
          link.setAttribute("href", next.getAttribute("href"));
        } else {
          var holder = link.parentNode;
          holder.parentNode.removeChild(holder);
        }
        status.textContent = articles.length + " more posts loaded, " +
          (count + articles.length) + " shown" + (next ? "." : "; no more posts.");
        // The URL of the last page loaded: reloading or coming Back shows
        // it again (with the filters) instead of the first page.
        if (window.history && history.replaceState) {
          history.replaceState(null, "", url);
        }
      })
      .catch(function () {
        status.textContent = "Could not load more posts; use the Load more link.";
      })
      .then(function () {
        loading = false;
        feed.setAttribute("aria-busy", "false");
        watch();
      });
  }

  var observer = null;
  function watch() {
    var link = nextLink();
    if (!link || !("IntersectionObserver" in window)) return;
    if (!observer) {
      observer = new IntersectionObserver(function (entries) {
        for (var i = 0; i < entries.length; i++) {
          if (entries[i].isIntersecting) load();
        }
      }, { rootMargin: "400px" });
    }
    observer.disconnect();
    observer.observe(link);
  }

  document.addEventListener("click", function (e) {
    var link = e.target && e.target.closest && e.target.closest("a[rel=next]");
    if (!link) return;
    e.preventDefault();
    load();
  });
  watch();
})();
