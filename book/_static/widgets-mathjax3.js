// The ipywidgets embedder typesets widget labels (e.g. a slider's "μ of Q") with MathJax 2's
// API, MathJax.Hub.Queue, whenever window.MathJax exists; this site runs MathJax 3, which has
// no Hub ("Cannot read properties of undefined (reading 'Queue')"). Route those calls to
// MathJax 3's typesetPromise. Loaded before widgets/embed.js, so this runs first on "load".
window.addEventListener("load", function () {
  var mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) {
    return;
  }
  mathjax.Hub = {
    Queue: function (command) {
      var element = Array.isArray(command) ? command[2] : undefined;
      var ready = mathjax.startup && mathjax.startup.promise ? mathjax.startup.promise : Promise.resolve();
      ready
        .then(function () {
          if (mathjax.typesetPromise) {
            return mathjax.typesetPromise(element ? [element] : undefined);
          }
        })
        .catch(function (error) {
          console.warn("MathJax could not typeset a widget", error);
        });
    },
  };
});
