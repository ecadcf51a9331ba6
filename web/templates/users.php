<?php
/** @var array $users @var string $error @var array $roles */
use Ems\Web\Session;
?>
<div class="row g-4">
  <div class="col-lg-7">
    <h1 class="h5">Web accounts</h1>
    <table class="table table-sm" id="users-table">
      <thead><tr><th>User name</th><th>Name</th><th>Role</th><th>Created</th><th>State</th></tr></thead>
      <tbody>
      <?php foreach ($users as $row): ?>
        <tr><td><?= e($row['username']) ?></td><td><?= e($row['display_name']) ?></td><td><?= e($row['role']) ?></td>
          <td class="small"><?= e(gmdate('Y-m-d H:i', (int) $row['created'])) ?> UTC</td>
          <td><?= $row['disabled'] ? 'disabled' : 'active' ?></td></tr>
      <?php endforeach; ?>
      </tbody>
    </table>
  </div>
  <div class="col-lg-5">
    <h2 class="h5">New account</h2>
    <?php if ($error !== ''): ?><div class="alert alert-danger" id="users-error"><?= e($error) ?></div><?php endif; ?>
    <form method="post" action="/users" class="card card-body" id="add-user-form">
      <input type="hidden" name="csrf" value="<?= e(Session::csrfToken()) ?>">
      <label class="form-label" for="new-username">User name</label>
      <input class="form-control mb-2" id="new-username" name="username" required>
      <label class="form-label" for="new-display">Name (as the audit trail shows it)</label>
      <input class="form-control mb-2" id="new-display" name="display_name">
      <label class="form-label" for="new-role">Role</label>
      <select class="form-select mb-2" id="new-role" name="role">
        <?php foreach ($roles as $role): ?><option value="<?= e($role) ?>"><?= e($role) ?></option><?php endforeach; ?>
      </select>
      <label class="form-label" for="new-password">Password (at least 10 characters)</label>
      <input class="form-control mb-3" id="new-password" name="password" type="password" autocomplete="new-password" required>
      <button class="btn btn-primary" type="submit" id="add-user">Create</button>
    </form>
  </div>
</div>
