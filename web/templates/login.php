<?php
/** @var string $error @var string $username */
use Ems\Web\Session;
?>
<div class="row justify-content-center mt-5">
  <div class="col-sm-8 col-md-5 col-lg-4">
    <h1 class="h4 mb-3">EMS web view</h1>
    <?php if ($error !== ''): ?>
      <div class="alert alert-danger" id="login-error"><?= e($error) ?></div>
    <?php endif; ?>
    <form method="post" action="/login" class="card card-body" id="login-form">
      <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
      <label class="form-label" for="username">User name</label>
      <input class="form-control mb-3" id="username" name="username" autocomplete="username" required value="<?= e($username) ?>">
      <label class="form-label" for="password">Password</label>
      <input class="form-control mb-3" id="password" name="password" type="password" autocomplete="current-password" required>
      <button class="btn btn-primary" type="submit" id="login">Log in</button>
    </form>
    <p class="text-body-secondary small mt-3">Accounts are made by an administrator:
      <code>ems web add-user NAME --role viewer|operator|admin</code>.</p>
  </div>
</div>
