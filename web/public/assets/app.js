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
