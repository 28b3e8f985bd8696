// Live updates: when the inbox's store changes, fetch the conversation list and the open
// thread again, as HTML the server rendered (and escaped). The stream says only that something
// changed, never what. No inline script anywhere: the page's policy forbids it.
"use strict";
(function () {
  const list = document.getElementById("conversations");
  if (!list || !window.EventSource) {
    return;
  }
  const messages = document.getElementById("messages");
  let busy = false;
  let again = false;

  function scrollDown() {
    if (messages) {
      messages.scrollTop = messages.scrollHeight;
    }
  }

  async function fragment(url) {
    const response = await fetch(url, {credentials: "same-origin"});
    if (response.status === 401) {
      window.location.assign("/login");
      return null;
    }
    return response.ok ? response.text() : null;
  }

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      do {
        again = false;
        const query = new URLSearchParams({show: list.dataset.show || "open"});
        if (messages) {
          query.set("open", messages.dataset.conversation);
        }
        const listed = await fragment("/fragments/list?" + query.toString());
        if (listed !== null) {
          list.innerHTML = listed;
        }
        if (messages) {
          const thread = await fragment("/fragments/thread/" + messages.dataset.conversation);
          if (thread !== null) {
            const atBottom =
              messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
            messages.innerHTML = thread;
            if (atBottom) {
              scrollDown();
            }
          }
        }
      } while (again);
    } finally {
      busy = false;
    }
  }

  const events = new EventSource("/events");
  events.addEventListener("changed", refresh);
  scrollDown();
})();
