<?php
/** The Captures tab's pictures: a button that asks the reason once for this page, then previews; a full-size view.
 *  @var int $maxReason */
?>
<div class="d-flex align-items-center gap-2 mb-2" id="pictures-bar">
  <button type="button" class="btn btn-sm btn-outline-primary" id="pictures-show">Show pictures</button>
  <span class="small text-body-secondary" id="pictures-status">Pictures are read from the server's store for you, with a reason, and audited.</span>
</div>
<div class="modal" id="pictures-dialog" tabindex="-1" aria-labelledby="pictures-title" aria-hidden="true">
  <div class="modal-dialog"><form class="modal-content" id="pictures-form">
    <div class="modal-header"><h2 class="modal-title h5" id="pictures-title">Show pictures</h2>
      <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Cancel"></button></div>
    <div class="modal-body">
      <label class="form-label" for="pictures-reason">Reason (required, asked once for this page: the audit trail keeps it with your name for every picture you open)</label>
      <textarea class="form-control" id="pictures-reason" maxlength="<?= e($maxReason) ?>" rows="2" required><?= e($reason ?? '') ?></textarea>
      <div class="text-danger small mt-2" id="pictures-error"></div>
    </div>
    <div class="modal-footer">
      <button type="button" class="btn btn-secondary" data-bs-dismiss="modal">Cancel</button>
      <button type="submit" class="btn btn-primary" id="pictures-confirm">Show</button>
    </div>
  </form></div>
</div>
<div class="modal" id="picture-dialog" tabindex="-1" aria-labelledby="picture-title" aria-hidden="true">
  <div class="modal-dialog modal-xl"><div class="modal-content">
    <div class="modal-header"><h2 class="modal-title h5" id="picture-title">Capture</h2>
      <button type="button" class="btn-close" data-bs-dismiss="modal" aria-label="Close"></button></div>
    <div class="modal-body">
      <div class="small" id="picture-status"></div>
      <div class="text-danger small" id="picture-error"></div>
      <img class="img-fluid d-none border" id="picture-full" alt="the capture at full size">
    </div>
  </div></div>
</div>
