<?php /** @var string $title @var string $message */ ?>
<div class="alert alert-warning" id="error-message"><strong><?= e($title) ?>.</strong> <?= e($message) ?></div>
<p><a href="/">Back</a></p>
