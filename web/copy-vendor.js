// Copies the browser files of the npm packages into public/vendor (served by the web server), after npm install.
const fs = require('fs');
const path = require('path');

const here = __dirname;
const copies = {
  'node_modules/jquery/dist/jquery.min.js': 'public/vendor/jquery/jquery.min.js',
  'node_modules/bootstrap/dist/css/bootstrap.min.css': 'public/vendor/bootstrap/css/bootstrap.min.css',
  'node_modules/bootstrap/dist/js/bootstrap.bundle.min.js': 'public/vendor/bootstrap/js/bootstrap.bundle.min.js',
};
for (const [from, to] of Object.entries(copies)) {
  fs.mkdirSync(path.dirname(path.join(here, to)), { recursive: true });
  fs.copyFileSync(path.join(here, from), path.join(here, to));
}
console.log('copied ' + Object.keys(copies).length + ' files into public/vendor');
