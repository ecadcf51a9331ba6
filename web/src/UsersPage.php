<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** Web accounts (admins only): the list, and a new account with a role. */
final class UsersPage
{
    private const NAME = '/^[A-Za-z0-9_.@-]{1,128}$/';
    private const MIN_PASSWORD = 10;

    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function show(string $error = '', string $notice = '', int $status = 200): void
    {
        $users = $this->db->query('SELECT id, username, display_name, role, created, disabled FROM web_users ORDER BY username')->fetchAll();
        View::page('users', ['title' => 'Users', 'tab' => 'users', 'user' => $this->auth->user(), 'users' => $users,
            'error' => $error, 'notice' => $notice, 'roles' => array_keys(Auth::ROLES)], $status);
    }

    public function add(): void
    {
        $name = trim(AuthPages::posted('username'));
        $display = trim(AuthPages::posted('display_name')) ?: $name;
        $role = AuthPages::posted('role');
        $password = AuthPages::posted('password');
        $error = match (true) {
            !preg_match(self::NAME, $name) => 'User name: letters, digits and _ . @ - only, at most 128.',
            !isset(Auth::ROLES[$role]) => 'Unknown role.',
            strlen($password) < self::MIN_PASSWORD => 'The password needs at least ' . self::MIN_PASSWORD . ' characters.',
            strlen($display) > 1020 || iconv_strlen($display) === false || iconv_strlen($display) > 255 => 'The display name is too long.',
            default => '',
        };
        if ($error === '' && $this->exists($name)) {
            $error = 'That user name is taken.';
        }
        if ($error !== '') {
            $this->show($error, '', 422);
            return;
        }
        $algo = defined('PASSWORD_ARGON2ID') ? PASSWORD_ARGON2ID : PASSWORD_DEFAULT;
        $this->db->prepare('INSERT INTO web_users (username, display_name, password_hash, role, created) VALUES (:u, :d, :h, :r, :c)')
            ->execute([':u' => $name, ':d' => $display, ':h' => password_hash($password, $algo), ':r' => $role, ':c' => microtime(true)]);
        App::redirect('/users');
    }

    private function exists(string $name): bool
    {
        $find = $this->db->prepare('SELECT 1 FROM web_users WHERE username = :u');
        $find->execute([':u' => $name]);
        return (bool) $find->fetchColumn();
    }
}
