// Cairn dashboard: the copy buttons and the confirmation before a new API token cuts off
// the current one. Everything works without this script (the server asks for
// confirmation itself); it only makes both one click shorter.
'use strict';

document.addEventListener('click', function (event) {
  var copy = event.target.closest('[data-copy]');
  if (copy) {
    var field = document.getElementById(copy.getAttribute('data-copy'));
    if (!field) return;
    var done = function () {
      var label = copy.textContent;
      copy.textContent = 'Copied';
      copy.classList.add('copied');
      setTimeout(function () { copy.textContent = label; copy.classList.remove('copied'); }, 2000);
    };
    var fallback = function () {
      field.focus();
      field.select();
      try { document.execCommand('copy'); done(); } catch (e) { /* the text stays selected */ }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, fallback);
    } else {
      fallback();
    }
    return;
  }
  var ask = event.target.closest('[data-confirm]');
  if (ask) {
    if (window.confirm(ask.getAttribute('data-confirm'))) {
      ask.value = ask.getAttribute('data-confirmed-value') || ask.value;
    } else {
      event.preventDefault();
    }
  }
});
