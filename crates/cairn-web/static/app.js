// Cairn dashboard: the copy buttons, the confirmation before a new API token cuts off
// the current one, and reading an uploaded metadata file into its text field. Everything works without this script (the server asks for
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

// Settings → Single Sign-On: a metadata file chosen in a file input is read into the
// text field it names (the form posts text; pasting works without this script).
document.addEventListener('change', function (event) {
  var input = event.target;
  if (!input.matches || !input.matches('input[type=file][data-read-into]')) return;
  var target = document.getElementById(input.getAttribute('data-read-into'));
  var file = input.files && input.files[0];
  if (!target || !file) return;
  // The dashboard reads forms of at most 64 KiB, URL-encoded.
  if (file.size > 40 * 1024) { window.alert('This file is too large for the form: give its URL, or use cairn sso saml --metadata-file.'); input.value = ''; return; }
  file.text().then(function (text) { target.value = text; });
});
