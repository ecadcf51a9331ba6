<?php
declare(strict_types=1);

namespace Ems\Web;

use PDO;

/** Login, logout, the theme switch and the landing page. */
final class AuthPages
{
    public function __construct(private readonly PDO $db, private readonly Auth $auth)
    {
    }

    public function home(): void
    {
        App::redirect($this->auth->user() ? '/clients' : '/login');
    }

    public function loginForm(string $error = '', int $status = 200): void
    {
        if ($this->auth->user() !== null && $error === '') {
            App::redirect('/clients');
            return;
        }
        View::page('login', ['title' => 'Log in', 'error' => $error, 'user' => null, 'tab' => '',
            'username' => self::posted('username')], $status);
    }

    public function login(): void
    {
        $username = (string) iconv_substr(trim(self::posted('username')), 0, 128);
        $password = self::posted('password');
        $result = $this->auth->login($username, $password, (string) ($_SERVER['REMOTE_ADDR'] ?? ''));
        if ($result === 'ok') {
            App::redirect('/clients');
        } elseif ($result === 'throttled') {
            $minutes = (int) ceil(Throttle::WINDOW_S / 60);
            $this->loginForm("Too many failed logins: try again in $minutes minutes.", 429);
        } else {
            $this->loginForm('Wrong user name or password.', 401);
        }
    }

    public function logout(): void
    {
        $this->auth->logout();
        App::redirect('/login');
    }

    public function theme(): void
    {
        $theme = in_array(self::posted('theme'), App::THEMES, true) ? self::posted('theme') : 'dark';
        setcookie(App::THEME_COOKIE, $theme, ['expires' => time() + 365 * 86400, 'path' => '/', 'httponly' => true,
            'samesite' => 'Strict', 'secure' => Session::isHttps()]);
        $back = self::posted('back') ?: '/';
        App::redirect(Router::knownPath(parse_url($back, PHP_URL_PATH) ?: '/') && str_starts_with($back, '/') && !str_starts_with($back, '//') ? $back : '/');
    }

    /** A POST field as a string ('' when missing or not a string). */
    public static function posted(string $name): string
    {
        return is_string($_POST[$name] ?? null) ? $_POST[$name] : '';
    }
}
