// EMS web view: small conveniences on top of server-rendered pages (jQuery).
$(function () {
  // changing the state or page size filter applies it at once (a GET: nothing changes on the server)
  $('#filter-state, #filter-per').on('change', function () {
    $('#clients-filter').find('input[name=page]').remove();
    $('#clients-filter').trigger('submit');
  });
  // the history tabs' server and page size selects apply at once too
  $('#history-filter .ems-autosubmit').on('change', function () {
    $('#history-filter').trigger('submit');
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
    var data = sync ? { reason: reason } : { reason: reason, action: job.kind, client: String(job.$row.data('client')) };
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
