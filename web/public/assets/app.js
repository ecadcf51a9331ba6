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
      $('#pictures-reason').val('');
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
