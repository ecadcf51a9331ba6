// EMS web view: small conveniences on top of server-rendered pages (jQuery).
$(function () {
  // a list tab's selects (state, server, page size) apply at once (a GET: nothing changes on the server)
  $('.ems-filter .ems-autosubmit').on('change', function () {
    $(this.form).trigger('submit');
  });
  // the Fleet view's "not seen for more than N days" choice too
  $('#fleet-stale-form .ems-autosubmit').on('change', function () {
    $('#fleet-stale-form').trigger('submit');
  });
  // last-seen times in the browser's own time zone
  $('.ems-time').each(function () {
    var ts = parseFloat($(this).data('ts'));
    if (!isNaN(ts)) {
      $(this).attr('title', $(this).text()).text(new Date(ts * 1000).toLocaleString());
    }
  });
});

// The Servers tab: a confirmation with a mandatory reason, the POST (CSRF token in a header), then the
// status followed to the end by polling the server (which asks the admin API; the token stays there).
$(function () {
  var dialog = document.getElementById('act-dialog');
  if (!dialog) {
    return;
  }
  var modal = new bootstrap.Modal(dialog);
  var pending = null;
  var csrf = $('input[name=csrf]').first().val();
  var POLL_MS = 1000;

  function failure(xhr) {
    var answer = xhr.responseJSON;
    return answer && answer.error ? answer.error : 'Refused (' + xhr.status + ' ' + xhr.statusText + ')';
  }

  function showCommand($cell, command) {
    $cell.attr('data-status', command.status).attr('data-command', command.id)
      .text(command.status + ' · ' + command.summary)
      .toggleClass('text-danger', command.status === 'failed' || command.status === 'expired')
      .toggleClass('text-success', command.status === 'done');
  }

  function followCommand($cell, command) {
    showCommand($cell, command);
    if (command.final) {
      return;
    }
    setTimeout(function () {
      $.getJSON('/servers/command', { id: command.id })
        .done(function (next) { followCommand($cell, next); })
        .fail(function (xhr) { $cell.text(failure(xhr) + ' (retrying)'); setTimeout(function () { followCommand($cell, command); }, POLL_MS); });
    }, POLL_MS);
  }

  function followSync($row, since) {
    var $progress = $row.find('.ems-sync-progress');
    setTimeout(function () {
      $.getJSON('/servers/state').done(function (answer) {
        var server = answer.servers.filter(function (s) { return s.server_id === String($row.data('server')); })[0];
        if (!server) {
          return;
        }
        $row.find('.ems-sync-state').text(server.state);
        var $last = $row.find('.ems-last-sync').attr('data-ts', server.last_sync);
        if (server.last_sync > 0) {
          $last.text(new Date(server.last_sync * 1000).toLocaleString());
        }
        if (server.last_sync > since && server.state !== 'syncing') {
          $progress.attr('data-done', '1').text('synced: ' + server.rows_synced.toLocaleString() + ' rows');
        } else {
          $progress.text('syncing… last sync ' + (server.last_sync > 0 ? new Date(server.last_sync * 1000).toLocaleTimeString() : 'never'));
          followSync($row, since);
        }
      }).fail(function () { followSync($row, since); });
    }, POLL_MS);
  }

  $('.ems-act').on('click', function () {
    var $button = $(this);
    pending = { kind: $button.data('kind'), $row: $button.closest('tr') };
    $('#act-title').text($button.data('label'));
    $('#act-question').text($button.data('label') + ' on ' + $button.data('target') + '?');
    $('#act-reason').val('');
    $('#act-error').text('');
    modal.show();
  });
  dialog.addEventListener('shown.bs.modal', function () { $('#act-reason').trigger('focus'); });

  $('#act-form').on('submit', function (event) {
    event.preventDefault();
    var reason = $.trim($('#act-reason').val());
    if (!pending) {
      return;
    }
    if (!reason) {
      $('#act-error').text('A reason is required.');
      return;
    }
    var job = pending;
    var sync = job.kind === 'sync';
    var data = sync ? { reason: reason, server: job.$row.attr('data-server') }
      : { reason: reason, action: job.kind, client: job.$row.attr('data-client'), server: $('#server-clients').attr('data-server') };
    var since = parseFloat(job.$row.find('.ems-last-sync').attr('data-ts')) || 0;
    $.ajax({ url: sync ? '/servers/sync' : '/servers/action', method: 'POST', data: data, dataType: 'json',
             headers: { 'X-CSRF-Token': csrf } })
      .done(function (answer) {
        modal.hide();
        pending = null;
        if (sync) {
          job.$row.find('.ems-sync-progress').removeAttr('data-done').text(answer.already_running ? 'a sync is already running…' : 'sync started…');
          followSync(job.$row, since);
        } else {
          followCommand(job.$row.find('.ems-command-status'), answer);
        }
      })
      .fail(function (xhr) { $('#act-error').text(failure(xhr)); });
  });
});

// Keyboard shortcuts (listed in the "?" dialog, built from this one table) and a client row's context actions
// (its ⋮ menu, also on right-click and on Enter for the row chosen with j/k). Never while typing in a field.
$(function () {
  var dialog = document.getElementById('keys-dialog');
  if (!dialog) {
    return;  // not signed in
  }
  var GO = [['c', '/clients', 'Clients'], ['n', '/sessions', 'Sessions'], ['y', '/security', 'Security'], ['l', '/logs', 'Logs'],
            ['f', '/fileops', 'File Ops'], ['m', '/messages', 'Messages'], ['p', '/captures', 'Captures'],
            ['s', '/servers', 'Servers'], ['r', '/reports', 'Reports'], ['u', '/users', 'Users']];
  var OTHER = [['/', 'Focus the filter'], ['j / k', 'Next / previous row'], ['Enter', 'Open the row (a client row: its actions menu)'],
               ['?', 'This help'], ['Esc', 'Close a dialog or menu; leave a field']];
  var keys = new bootstrap.Modal(dialog);
  var $list = $('#keys-list');
  GO.forEach(function (go) {
    if ($('.ems-nav a.nav-link[href="' + go[1] + '"]').length) {  // only the tabs this role has
      $list.append($('<tr>').attr('data-keys', 'g ' + go[0])
        .append($('<td>').append($('<kbd>').text('g'), ' ', $('<kbd>').text(go[0])), $('<td>').text(go[2])));
    }
  });
  OTHER.forEach(function (other) {
    $list.append($('<tr>').attr('data-keys', other[0]).append($('<td>').append($('<kbd>').text(other[0])), $('<td>').text(other[1])));
  });

  var pendingG = false;
  var $rows = function () { return $('main table tbody tr').has('td:not([colspan])'); };

  function typing(target) {
    return $(target).is('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
  }

  function move(step) {
    var $all = $rows();
    if (!$all.length) {
      return;
    }
    var at = $all.index($all.filter('.ems-current'));
    var next = at < 0 ? (step > 0 ? 0 : $all.length - 1) : Math.max(0, Math.min($all.length - 1, at + step));
    $all.removeClass('ems-current table-active').removeAttr('aria-selected');
    var row = $all.eq(next).addClass('ems-current table-active').attr('aria-selected', 'true')[0];
    row.scrollIntoView({ block: 'nearest', behavior: 'instant' });
  }

  function openMenu($row) {
    var button = $row.find('.ems-row-menu')[0];
    if (button) {
      var menu = bootstrap.Dropdown.getOrCreateInstance(button);
      menu.show();
      $(button).siblings('.dropdown-menu').find('.dropdown-item').first().trigger('focus');
      return true;
    }
    return false;
  }

  function openRow() {
    var $row = $rows().filter('.ems-current');
    if (!$row.length || openMenu($row)) {
      return;
    }
    var link = $row.find('a.ems-report-open, a[href]').not('.dropdown-item')[0];
    if (link) {
      window.location.assign(link.getAttribute('href'));
    }
  }

  $(document).on('keydown', function (event) {
    if (event.key === 'Escape' && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target) || event.isDefaultPrevented()) {
      return;
    }
    if ($('.modal.show').length && event.key !== '?') {
      return;  // the dialog has the keyboard (Esc closes it: Bootstrap)
    }
    if (pendingG) {
      pendingG = false;
      var go = GO.filter(function (g) { return g[0] === event.key; })[0];
      if (go && $('.ems-nav a.nav-link[href="' + go[1] + '"]').length) {
        event.preventDefault();
        window.location.assign(go[1]);
      }
      return;
    }
    var handled = true;
    switch (event.key) {
      case 'g': pendingG = true; break;
      case '?': keys.toggle(); break;
      case '/': $('#filter-q').trigger('focus').trigger('select'); break;
      case 'j': move(1); break;
      case 'k': move(-1); break;
      case 'Enter': handled = $(event.target).is('body, tr') && $rows().filter('.ems-current').length > 0; if (handled) { openRow(); } break;
      default: handled = false;
    }
    if (handled) {
      event.preventDefault();
    }
  });

  // right-click on a client row: its actions menu instead of the browser's
  $('#clients-table').on('contextmenu', 'tbody tr', function (event) {
    if (openMenu($(this))) {
      event.preventDefault();
      $rows().removeClass('ems-current table-active').removeAttr('aria-selected');
      $(this).addClass('ems-current table-active').attr('aria-selected', 'true');
    }
  });
  var marked = $('tr.ems-marked')[0];  // the client a row menu came for, on the Servers tab
  if (marked) {
    marked.scrollIntoView({ block: 'center', behavior: 'instant' });
  }
});

// The Updates tab: the selection count, "select this page", and a check or rollout followed to its end. An operator's
// page advances it (POST /updates/step, idempotent: a second page at once only reads); a viewer's page only reads.
$(function () {
  function countPicked() {
    var all = $('#pick-all').prop('checked');
    $('.ems-pick').prop('disabled', all);
    $('#pick-count').text(all ? 'all matching selected' : $('.ems-pick:checked').length + ' selected');
  }
  $('#pick-page').on('change', function () { $('.ems-pick').prop('checked', $(this).prop('checked')); countPicked(); });
  $('.ems-pick, #pick-all').on('change', countPicked);

  var $run = $('#update-run');
  if (!$run.length) {
    return;
  }
  var csrf = $('input[name=csrf]').first().val();
  var isCheck = false;
  var POLL_MS = 1000;

  function render(view) {
    isCheck = view.action === 'update-check';
    $run.attr('data-state', view.state);
    $('#run-state').text(view.state).toggleClass('text-bg-success', view.state === 'done')
      .toggleClass('text-bg-danger', view.state === 'stopped').toggleClass('text-bg-info', view.state === 'running');
    var skipped = view.counts.skipped || 0;
    var percent = view.total ? Math.round(100 * (view.final - skipped) / view.total) : 100;
    $('#run-progress').attr('aria-valuenow', view.final - skipped).find('.progress-bar').css('width', percent + '%').text(percent + ' %')
      .toggleClass('bg-danger', view.failures > 0);
    $('#run-summary').text((view.final - skipped) + ' of ' + view.total + ' clients finished, ' + view.failures + ' failed'
      + (skipped ? ', ' + skipped + ' not started' : '') + (isCheck ? '' : ' · wave ' + view.current_wave + ' of ' + view.waves));
    $('#run-note').text(view.note || '');
    var $body = $('#run-targets tbody').empty();
    view.targets.forEach(function (t) {
      var $row = $('<tr>').attr('data-client', t.client).attr('data-status', t.status).append($('<td>').text(t.position + 1));
      if (!isCheck) {
        $row.append($('<td class="ems-wave">').text(t.wave));
      }
      $row.append($('<td>').text(t.host), $('<td class="font-monospace small">').text(t.client),
        $('<td class="ems-status">').text(t.status).toggleClass('text-danger', ['failed', 'expired', 'error', 'lost'].indexOf(t.status) >= 0)
          .toggleClass('text-success', t.status === 'done'),
        $('<td class="ems-count">').text(t.update_count === null ? (t.dry_run ? 'dry run' : '') : t.update_count),
        $('<td class="small ems-names">').text(t.updates.join(', ')),
        $('<td class="small ems-command-status">').text(t.summary));
      if (t.dry_run) {
        $row.find('.ems-status').append(' ', $('<span class="badge text-bg-warning">').text('DRY RUN'));
      }
      $body.append($row);
    });
    $('#apply-form').toggleClass('d-none', view.state === 'running');
  }

  function follow() {
    if ($run.attr('data-state') !== 'running') {
      return;
    }
    var call = $run.data('step') === 1
      ? $.ajax({ url: '/updates/step', method: 'POST', data: { id: $run.data('id') }, dataType: 'json', headers: { 'X-CSRF-Token': csrf } })
      : $.getJSON('/updates/state', { id: $run.data('id') });
    call.done(function (view) { render(view); })
      .fail(function (xhr) { $('#run-note').text((xhr.responseJSON && xhr.responseJSON.error) || 'No answer (' + xhr.status + '): retrying'); })
      .always(function () { setTimeout(follow, POLL_MS); });
  }

  render($run.data('initial'));
  setTimeout(follow, 0);
});

// The Servers tab's auto-sync: what the sync worker runs with (read back from it), and for admins the change.
$(function () {
  if (!$('#auto-sync').length) {
    return;
  }
  var csrf = $('input[name=csrf]').first().val();

  function show(auto) {
    $('#auto-state').attr('data-enabled', auto.enabled ? '1' : '0').attr('data-every', auto.every_min)
      .text(auto.enabled ? 'on, every ' + auto.every_min + ' min' + (auto.next_in_min === null ? '' : ' (next in ' + auto.next_in_min + ' min)')
        : 'off (a full snapshot only on "Sync This Server")');
    $('#auto-enabled').prop('checked', auto.enabled);
    $('#auto-every').val(Math.round(auto.every_min));
  }
  function failure(xhr) {
    return (xhr.responseJSON && xhr.responseJSON.error) || 'Refused (' + xhr.status + ')';
  }

  $.getJSON('/servers/auto').done(show).fail(function (xhr) { $('#auto-state').text('unknown: ' + failure(xhr)); });
  $('#auto-form').on('submit', function (event) {
    event.preventDefault();
    $('#auto-error').text('');
    $.ajax({ url: '/servers/auto', method: 'POST', dataType: 'json', headers: { 'X-CSRF-Token': csrf },
             data: { enabled: $('#auto-enabled').prop('checked') ? '1' : '0', every_min: $('#auto-every').val(), reason: $.trim($('#auto-reason').val()) } })
      .done(function (auto) { show(auto); $('#auto-reason').val(''); })
      .fail(function (xhr) { $('#auto-error').text(failure(xhr)); });
  });
});

// Pictures: the Clients tab's "Look at screen" and the Captures tab's previews and full size. Each is a POST
// (CSRF token in a header) with the reason the person gave; a JPEG answer is shown through a blob: URL, a
// refusal's JSON {error, detail} as text. Nothing of a picture is kept once its dialog closes.
$(function () {
  var csrf = $('input[name=csrf]').first().val();

  function refusal(status, text) {
    var answer = null;
    try { answer = JSON.parse(text); } catch (ignored) { answer = null; }
    return answer && answer.error ? answer : { error: 'Refused (' + status + ')', detail: '' };
  }

  function postForJpeg(url, data, done, fail) {
    var xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.responseType = 'blob';
    xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded; charset=UTF-8');
    xhr.onload = function () {
      if (xhr.status === 200 && (xhr.getResponseHeader('Content-Type') || '').indexOf('image/jpeg') === 0) {
        done(xhr.response);
      } else {
        xhr.response.text().then(function (text) { fail(refusal(xhr.status, text)); });
      }
    };
    xhr.onerror = function () { fail({ error: 'The web server did not answer.', detail: '' }); };
    xhr.send($.param(data));
  }

  function showBlob(img, blob) {
    if (img.src && img.src.indexOf('blob:') === 0) {
      URL.revokeObjectURL(img.src);
    }
    img.src = URL.createObjectURL(blob);
    $(img).removeClass('d-none');
  }

  function forget(img) {
    if (img.src && img.src.indexOf('blob:') === 0) {
      URL.revokeObjectURL(img.src);
    }
    $(img).addClass('d-none').removeAttr('src').removeAttr('data-width').removeAttr('data-height');
  }

  $('#look-image, #picture-full').on('load', function () {
    $(this).attr('data-width', this.naturalWidth).attr('data-height', this.naturalHeight);
  });

  var look = document.getElementById('look-dialog');
  if (look) {
    var lookModal = new bootstrap.Modal(look);
    var target = null;
    $('.ems-look').on('click', function () {
      var $row = $(this).closest('tr');
      target = { server: $row.attr('data-server'), client: $row.attr('data-client'), name: $(this).attr('data-target') };
      $('#look-question').text('Look at the screen of ' + target.name + ' (' + target.client + ')? ' +
        'The employee is shown your name and the reason, and the audit trail keeps both.');
      $('#look-reason').val('').prop('disabled', false);
      $('#look-error, #look-detail, #look-status').text('');
      $('#look-confirm').prop('disabled', false);
      forget(document.getElementById('look-image'));
      lookModal.show();
    });
    look.addEventListener('shown.bs.modal', function () { $('#look-reason').trigger('focus'); });
    look.addEventListener('hidden.bs.modal', function () { forget(document.getElementById('look-image')); });
    $('#look-form').on('submit', function (event) {
      event.preventDefault();
      var reason = $.trim($('#look-reason').val());
      $('#look-error, #look-detail').text('');
      if (!target) {
        return;
      }
      if (!reason) {
        $('#look-error').text('A reason is required.');
        return;
      }
      var asked = target;
      $('#look-confirm').prop('disabled', true);
      $('#look-status').text('Asking ' + asked.name + ' for its screen…');
      postForJpeg('/clients/frame', { server: asked.server, client: asked.client, reason: reason }, function (blob) {
        $('#look-confirm').prop('disabled', false);
        $('#look-status').attr('data-state', 'shown').text('The screen of ' + asked.name + ' at ' + new Date().toLocaleTimeString());
        showBlob(document.getElementById('look-image'), blob);
      }, function (answer) {
        $('#look-confirm').prop('disabled', false);
        $('#look-status').attr('data-state', 'refused').text('');
        $('#look-error').text(answer.error);
        $('#look-detail').text(answer.detail || '');
      });
    });
  }

  var picturesDialog = document.getElementById('pictures-dialog');
  if (picturesDialog) {
    var picturesModal = new bootstrap.Modal(picturesDialog);
    var pictureModal = new bootstrap.Modal(document.getElementById('picture-dialog'));
    var reasonGiven = null;

    var openFull = function () {
      var $cell = $(this).closest('.ems-picture');
      var img = document.getElementById('picture-full');
      forget(img);
      $('#picture-error').text('');
      $('#picture-title').text('Capture ' + $cell.attr('data-capture'));
      $('#picture-status').text('Reading the capture from the server’s store…');
      pictureModal.show();
      postForJpeg('/captures/image', { server: $cell.attr('data-server'), id: $cell.attr('data-capture'), reason: reasonGiven },
        function (blob) { $('#picture-status').text(''); showBlob(img, blob); },
        function (answer) { $('#picture-status').text(''); $('#picture-error').text(answer.error + (answer.detail ? ' (' + answer.detail + ')' : '')); });
    };
    document.getElementById('picture-dialog').addEventListener('hidden.bs.modal', function () { forget(document.getElementById('picture-full')); });

    var loadPreviews = function () {
      var byServer = {};
      $('.ems-picture[data-capture]').each(function () {
        var server = $(this).attr('data-server');
        (byServer[server] = byServer[server] || []).push($(this).attr('data-capture'));
      });
      $('#pictures-status').text('Reading previews…');
      $.each(byServer, function (server, ids) {
        var cells = $('.ems-picture[data-capture]').filter(function () { return $(this).attr('data-server') === server; });
        $.ajax({ url: '/captures/previews', method: 'POST', data: { server: server, ids: ids.join(','), reason: reasonGiven },
                 dataType: 'json', headers: { 'X-CSRF-Token': csrf } })
          .done(function (answer) {
            cells.each(function () {
              var id = $(this).attr('data-capture');
              var url = answer.previews[id];
              if (url && url.indexOf('data:image/jpeg;base64,') === 0) {
                $(this).empty().append($('<img>', { src: url, alt: 'preview of capture ' + id, 'class': 'ems-thumb' }).on('click', openFull));
              } else {
                $(this).empty().append($('<span>', { 'class': 'small text-body-secondary', text: answer.missing[id] || 'no preview' }));
              }
            });
            $('#pictures-status').attr('data-state', 'shown').text('Previews read for you with your reason (audited). Click one for full size.');
          })
          .fail(function (xhr) {
            var answer = refusal(xhr.status, xhr.responseText);
            $('#pictures-status').attr('data-state', 'refused').text(answer.error + (answer.detail ? ' (' + answer.detail + ')' : ''));
          });
      });
    };

    $('#pictures-show').on('click', function () {
      $('#pictures-reason').val($('#pictures-reason').prop('defaultValue'));  // the tab's own reason, if it was given one
      $('#pictures-error').text('');
      picturesModal.show();
    });
    picturesDialog.addEventListener('shown.bs.modal', function () { $('#pictures-reason').trigger('focus'); });
    $('#pictures-form').on('submit', function (event) {
      event.preventDefault();
      var reason = $.trim($('#pictures-reason').val());
      if (!reason) {
        $('#pictures-error').text('A reason is required.');
        return;
      }
      reasonGiven = reason;
      picturesModal.hide();
      $('#pictures-show').prop('disabled', true).text('Pictures shown');
      loadPreviews();
    });
  }
});
